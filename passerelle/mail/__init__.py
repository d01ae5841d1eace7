"""The pure mail-handling core: header folklore, addresses, subjects, MIME parsing, HTML to text, quote
trimming and thread placement. No database code here: pure functions and frozen dataclasses.

Entry points: ``parse.parse_message``, ``quotes.split_reply``, ``threading.Threader``,
``subject.normalize_subject``, ``addresses.parse_address_list`` / ``verp_encode`` / ``verp_decode``.
"""
