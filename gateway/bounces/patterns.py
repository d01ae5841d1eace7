"""Vendor folklore: how non-standard bounces look, one regular expression per habit.

Before RFC 3464 (1996) every MTA wrote its own failure notice, and many still do (qmail, Exim, older
Exchange, Domino, webmail providers). They differ in wording but share a handful of layouts: the
failed address alone on a line ("<user@host>:" in qmail/Postfix/Yahoo, "user@host on <date>" in
Exchange 5.5/2003, indented in Exim/Domino/GMX), an SMTP transcript line ("550 5.1.1 <user@host>...
User unknown" in Sendmail), or a label followed by the address ("Unknown user: user@host" in
SMTP32/IMail). These patterns locate the addresses; the reason comes from the text around them.
"""

from __future__ import annotations

import re

# RFC 5322 dot-atom local part and a hostname with a real TLD. Quoted local parts and address literals
# never show up in bounces of list mail.
ADDRESS = (
    r"(?:(?<![A-Za-z0-9!#$%&'*+/?^_`{|}~.-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"|\"[^\"\r\n\\]{1,64}\")"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
ADDRESS_RE = re.compile(ADDRESS)

# Local parts that name a mail system role rather than a person: never the bounced recipient when a
# better candidate exists (they appear in "contact postmaster@..." sentences).
ROLE_LOCALPARTS = frozenset({
    "postmaster", "mailer-daemon", "mailerdaemon", "abuse", "hostmaster", "webmaster", "root",
    "daemon", "noreply", "no-reply", "donotreply", "do-not-reply", "bounce", "bounces", "nobody",
    "mail-daemon", "mdaemon", "security",
})

# Where the copy of the original message starts inside a plain-text bounce. Everything after it is
# the original message (its headers tell us who sent it); nothing after it describes the failure.
ORIGINAL_BOUNDARY_RE = re.compile(
    r"^[ \t>]*(?:[-=*_]{2,}[ \t]*)?(?:"
    r"below this line is a copy of the message|"
    r"(?:this is )?a copy of (?:the |your )?(?:original )?message|"
    r"the (?:original )?message (?:was|is) (?:attached|included|below)|"
    r"original message(?: follows| headers?)?|"
    r"(?:un)?sent message follows|returned message|message text follows|"
    r"the header of the original message|header of the source mail|original message header|"
    r"the original message headers|headers of (?:the |your )?(?:original )?message|"
    r"start of (?:returned |original )?(?:message|headers)|returned mail follows|"
    r"(?:original|returned|failed) (?:mail|message|e-?mail)(?: text)?\b|the message you sent|"
    r"message (?:headers? )?follows?\b|rfc822 headers follow|"
    r"\u5143\u306e\u30e1\u30c3\u30bb\u30fc\u30b8|"  # Japanese: "the original message"
    r"nachricht im anhang|urspr\u00fcngliche nachricht|message d'origine|messaggio originale|mensaje original"
    r")",
    re.IGNORECASE | re.MULTILINE,
)

# A raw header block glued to the notice without any marker (Lotus, old Sendmail).
HEADER_BLOCK_RE = re.compile(
    r"^(?:Return-Path|Received|Delivered-To|X-Original-To|Message-I[dD]|From|Date|Subject|MIME-Version):[^\n]*\n"
    r"(?:(?:[ \t][^\n]*|[A-Za-z][A-Za-z0-9-]*:[^\n]*)\n){2,}",
    re.MULTILINE,
)

# Tier 1: the failed address alone at the start of a line, optionally quoted, bracketed, followed by a
# colon, "on <date>", "(expanded from ...)", "...", or nothing.
ADDRESS_LINE_RE = re.compile(
    r"^[ \t]*(?:>(?!>)[ \t]*)?(?:[*\u2022\u00b7o-][ \t]+)?"
    r"(?:RCPT To:|Recipient:|Original-Recipient:|Intended recipient:|Destinataire\u00a0?:|Empf\u00e4nger:|"
    r"c=[^\n]{0,80}?dda:SMTP=|"  # Exchange 5.5 X.400 form: c=US;a= ;p=ORG;o=SITE;dda:SMTP=user@host;
    r"Failed recipient:|Unknown user:|User unknown:|User mailbox exceeds allowed size:|Bad address:|Invalid recipient:|"
    r"Recipient address:|Address:|Adresse\u00a0?:|\d+\.)?[ \t]*"
    r"[\"'<(\[]*(?P<addr>" + ADDRESS + r")(?=[\"'>)\]]*(?:[\s:;,.(\[<-]|$))",
    re.MULTILINE | re.IGNORECASE,
)

# Tier 2: SMTP transcript lines and "label: address" sentences.
TRANSCRIPT_RE = re.compile(
    r"^[ \t]*(?:<<< )?[45]\d\d[ -](?:#?[45]\.\d{1,3}\.\d{1,3}[ \t]+)?[\"<]?(?P<addr>" + ADDRESS + r")[\">]?",
    re.MULTILINE,
)
LABELLED_RE = re.compile(
    r"\b(?:unknown user|user unknown|invalid recipient|recipient|failed|address(?:es)?|mailbox|user|utilisateur|"
    r"destinataire|empf\u00e4nger|destinatario|benutzer|to|an|\u00e0|a|for|deliver(?:ed)? to|reach)\b"
    r"[ \t]*[:=]?[ \t]*[\"<(\[]?(?P<addr>" + ADDRESS + r")",
    re.IGNORECASE,
)

DAEMON_FROM_RE = re.compile(
    r"mailer[-_ ]?daemon|mail[-_ ]?delivery|postmaster|post[ _]?master|mail ?admin|mail system|mail ?server|"
    r"system administrator|post ?office|mail router|delivery (?:status|subsystem|system|notification)|"
    r"\bbounces?\b|^<?(?:root|nobody|daemon|mmdf|smtp|mail|noreply|no-reply)@|internet mail|returned mail|"
    r"notification|mail ?guard|gateway|mailer|antispam|anti-spam|mail ?filter|scanner|mailsweeper|"
    r"interscan|virus ?wall|daemon@|mail ?marshal|spam|admin@|\u90f5\u4ef6|\u30e1\u30fc\u30eb",
    re.IGNORECASE,
)

BOUNCE_SUBJECT_RE = re.compile(
    r"undeliver|undelivered|not (?:be )?delivered|could not be delivered|delivery (?:status|failure|failed|report|"
    r"problem|notification|error|has failed|delayed|incomplete)|returned mail|return(?:ed)? to sender|failure notice|"
    r"mail delivery|mail system error|non[- ]?deliver|could not send|couldn't be delivered|delivery has failed|"
    r"warning: could not|delayed mail|message not delivered|unzustellbar|nicht zustellbar|zustellung|non recapitabile|"
    r"mancato recapito|non remis|non distribu|remise|no entregado|no se pudo entregar|unable to deliver|mail error|"
    r"error sending|failed delivery|bounced|delivery report|mail could not|unknown recipient|user unknown|"
    r"mail failure|failed mail|nondeliverable|returning message|mail failed|\u914d\u9001\u4e0d\u80fd|\u9000\u4fe1",
    re.IGNORECASE,
)
# Words a notice's subject often has, but so do people's ("Error while installing ..."): they count only
# together with a daemon sender.
WEAK_BOUNCE_SUBJECT_RE = re.compile(
    r"returned|returning|message status|notice of|rejected|error|failure|problem with|\u914d\u9001|\u4e0d\u53ef\u80fd|"
    r"\u30a8\u30e9\u30fc|\u9000\u56de|\u5931\u6557|notification|warning|delay|could not|quota|mailbox",
    re.IGNORECASE,
)

FAILURE_BODY_RE = re.compile(
    r"could not be delivered|couldn'?t be delivered|wasn'?t able to deliver|was(?: not|n't) delivered|"
    r"unable to deliver|undeliverable|delivery (?:to the following|has failed|failed|failure|problem|error|to)|"
    r"permanent(?: fatal)? error|the following (?:address|recipient|destination)|did not reach|"
    r"not (?:be )?delivered|failed recipient|returned to (?:the )?sender|message (?:was|has) not been delivered|"
    r"(?:mail|message)s? (?:was |were )?returned|"
    r"address(?:es)?(?:\(es\))? failed|rejected (?:your|the) message|mail delivery failed|smtp error|"
    r"remote (?:host|server) (?:said|replied|returned)|host [^\n]{0,80} said:|user unknown|unknown user|"
    r"mailbox (?:is )?(?:full|unavailable)|non remis|n'a pas pu [\u00eaetr]+ (?:remis|d\u00e9livr|distribu)|"
    r"\u00e9chec de (?:la )?(?:remise|distribution)|unzustellbar|konnte nicht zugestellt|nicht zugestellt|"
    r"non [\u00e8e] stato possibile (?:recapitare|consegnare)|non recapitat|no se (?:ha )?pudo entregar|"
    r"non (?:[\u00e8e]|e') stato (?:recapitato|consegnato)|no (?:ha )?podido ser entregado|"
    r"failed permanently|could not deliver|has not been delivered|failure notice|i'm afraid i wasn't able|"
    r"transcript of (?:the )?session|the original message was received|message could not|is undeliverable|"
    r"giving up|gave up|delivery (?:is |has been )?delayed|has been delayed|still (?:being )?(?:trying|retried)|"
    r"will (?:keep|continue) trying|not yet been delivered|could not be sent|unable to send|"
    r"no such (?:user|address|mailbox|domain)|recipient (?:address )?rejected|message (?:was )?rejected|"
    r"delivery (?:status )?notification|non-?delivery|mail (?:was )?returned|returning message|"
    r"reason: |diagnostic|\b5\d\d[ -]#?5\.\d{1,3}\.\d{1,3}\b|#5\.\d\.\d|\(#\d\.\d\.\d\)|\u5c4a\u304d\u307e\u305b\u3093|"
    r"\u914d\u9001|\u9001\u4fe1\u3067\u304d|\u5b58\u5728\u3057\u307e\u305b\u3093|\u30a8\u30e9\u30fc|"
    r"could not reach|not reachable|delivery to .{1,100} failed|rejected by|message (?:was )?refused|"
    r"not accepted|failed to deliver|incorrectly constructed|malformed (?:recipient )?address|"
    r"account (?:is|has been) (?:disabled|suspended)|failed addresses follow|no valid recipients?|"
    # zh: cannot send / cannot deliver / returned mail / delivery failed
    r"\u65e0\u6cd5\u53d1\u9001|\u65e0\u6cd5\u9001\u8fbe|\u9000\u4fe1|\u6295\u9012\u5931\u8d25|"
    r"not a member of this (?:mailing )?list|you are not (?:allowed|authori[sz]ed) to post",
    re.IGNORECASE,
)

# A warning that the MTA keeps trying: delayed, soft, transient (RFC 3464 "Action: delayed").
DELAY_RE = re.compile(
    r"this is (?:a|just a) warning(?: message)?(?: only)?|will (?:keep|continue)(?: on)? trying|i'?ll keep trying|"
    r"(?:still|being) (?:being )?retried|not yet been delivered|has been delayed|"
    r"(?:delivery|message) (?:is |has been )?delayed|"
    r"delayed mail|temporarily (?:deferred|delayed)|still undelivered|\bwill be retried|will retry|"
    r"no action is required on your part|warning: could not send|delivery status notification \(delay\)|"
    r"retry (?:again )?(?:later|for)|will try (?:again|to deliver)|continue(?:s)? to attempt|"
    r"attempts will continue|will continue to (?:try|attempt|be made)|(?:has been|was) postponed|advisory[- ]only|"
    r"encore essay|weiterhin versucht|verz\u00f6ger|ritardat|retrasad",
    re.IGNORECASE,
)

# Reporting host named in the text of common plain notices.
REPORTING_MTA_RES = (
    re.compile(r"This is the qmail-send program at ([A-Za-z0-9.-]+)"),
    re.compile(r"This is the mail system at host ([A-Za-z0-9.-]+)"),
    re.compile(r"The original message was received at .*?\nfrom ([A-Za-z0-9.-]+)"),
    re.compile(r"Reporting-MTA: *\w+; *([A-Za-z0-9.-]+)", re.IGNORECASE),
)

# Role names of the reporting daemon itself: mail from them is a delivery report, whatever it says.
DAEMON_LOCALPARTS = frozenset({"mailer-daemon", "mailerdaemon", "mail-daemon", "mdaemon", "postmaster"})

EXPANDED_FROM_RE = re.compile(r"expanded from:?\s*<?(?P<addr>" + ADDRESS + r")", re.IGNORECASE)

# AOL (2000s): "Your mail to the following recipients could not be delivered ...:" then bare screen names.
AOL_SCREEN_NAMES_RE = re.compile(
    r"following recipients could not be delivered[^\n]*(?:\n[^\n]*){0,2}?:[ \t]*\n"
    r"((?:[ \t]+[A-Za-z0-9._-]+[ \t]*\n?)+)",
    re.IGNORECASE,
)

# A person replying to or forwarding a bounce (to the list, or to a helpdesk) writes ordinary mail.
FORWARD_PREFIX_RE = re.compile(
    r"^\s*(?:re|aw|sv|antw|odp|r|rif|ref|r\u00e9f|fwd?|fw|tr|wg|rv|enc|i|doorst|vs|vb|pd)\s*(?:\[\d+\])?\s*:",
    re.IGNORECASE,
)

# Feedback loops without RFC 5965 structure (Hotmail/Outlook.com JMRP and friends).
FEEDBACK_SUBJECT_RE = re.compile(r"^complaint about message from|^abuse report|^spam report|^fbl report", re.I)
