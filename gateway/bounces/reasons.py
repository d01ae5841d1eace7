"""Why a delivery failed: from an SMTP diagnostic text and an RFC 3463 status code to a short reason.

The reason vocabulary is the one Sisimai made common (userunknown, mailboxfull, ...), because the corpus
we measure against uses it and because operators already know it. Only four reasons mean the address
itself is dead, i.e. a *hard* bounce: the mailbox does not exist (userunknown), the domain does not exist
(hostunknown), the person has moved (hasmoved), or the domain publishes that it takes no mail at all
(notaccept with a 5xx answer, e.g. a null MX, RFC 7505). Everything else — full mailbox, spam filter,
blocklisted relay, policy, expired queue — says something about the message or the path, not about
the address, so it is soft: a list keeps the member and counts.

Matching order matters: a text such as "550 5.1.1 mailbox full" must be read as a full mailbox, and
"user unknown" answered *after DATA* is a content filter wearing the wrong hat (Japanese mobile
carriers and some appliances do this), not a dead mailbox.
"""

from __future__ import annotations

import re

HARD_REASONS: frozenset[str] = frozenset({"userunknown", "hostunknown", "hasmoved"})

# Every reason this module can produce, for documentation and tests.
REASONS: tuple[str, ...] = (
    "authfailure", "badreputation", "blocked", "contenterror", "exceedlimit", "expired", "feedback",
    "filtered", "hasmoved", "hostunknown", "mailboxfull", "mailererror", "mesgtoobig", "networkerror",
    "norelaying", "notaccept", "notcompliantrfc", "onhold", "policyviolation", "rejected", "requireptr",
    "securityerror", "spamdetected", "speeding", "suspend", "syntaxerror", "systemerror", "systemfull",
    "toomanyconn", "undefined", "userunknown", "virusdetected",
)


def _rx(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


# Text patterns, checked in this order against the lower-cased, whitespace-collapsed diagnostic.
# Phrases come from real MTAs and providers (Postfix, Sendmail, Exim, qmail, Exchange/Office 365, Gmail,
# Yahoo, iCloud, Orange/La Poste, GMX, Domino, ...) and from the languages our members write in.
_PRIORITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("filtered", _rx(
        # au/KDDI (ezweb.ne.jp) answers "550 : User unknown", with no address, when the recipient's own
        # sender filter refuses the message; a really unknown user gets "550 <addr>: User unknown".
        r"550:? : user unknown",
        r"refused due to recipient preferences", r"recipient preferences", r"blocked by the recipient",
        r"you have been blocked by", r"only accepting mail from specific", r"refuse to receive",
        r"not accepting (?:e-?mail|mail|messages) from",
    )),
    ("networkerror", _rx(
        # Postfix: a DNS answer that said "try again" (SERVFAIL/timeout) is not a missing domain.
        r"host not found, try again", r"temporary failure in name resolution",
        r"malformed or unexpected name server reply",
    )),
    ("blocked", _rx(
        # qmail: "Connected to <ip> but my name was rejected" — refused at HELO, i.e. our host is refused.
        r"my name was rejected", r"greeting (?:was )?rejected", r"helo (?:command )?rejected",
        r"after (?:initial connection|helo|ehlo)", r"in reply to (?:helo|ehlo)",
        r"(?:helo|ehlo) (?:command )?(?:refused|denied)",
    )),
    ("hostunknown", _rx(
        r"(?<![@\w.-])(?:[a-z0-9-]+\.)+[a-z]{2,} does not exist", r"host or domain name not found",
        r"the account or domain may not exist", r"\bhost \S+ not found",
        r"domain (?:name )?(?:not found|does not exist)", r"no such domain",
    )),
    ("rejected", _rx(
        r"sender (?:address )?(?:rejected|refused|denied|blocked|verify failed|verification failed)",
        r"domain of sender address", r"sender domain (?:must|does not|doesn't)",
        r"mail from (?:address )?(?:rejected|refused)",
        r"not a registered gateway user",
    )),
    ("userunknown", _rx(
        # X.1.3: the recipient address cannot even be parsed; it will never work.
        r"bad destination mailbox address",
    )),
    ("syntaxerror", _rx(
        r"malformed (?:recipient )?address", r"incorrectly constructed",
    )),
)

_ORDERED_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("mailboxfull", _rx(
        r"mail ?box (?:is )?(?:full|exceeded|over ?quota|size limit)",
        r"mail ?box (?:has )?exceeded", r"mail ?box (?:quota|storage)",
        r"(?:user|account|recipient|mailbox)(?:'s)? (?:is )?over (?:the |their |his |her )?(?:quota|storage)",
        r"over ?quota", r"quota (?:exceeded|exceed|full|violation|limit exceeded)",
        r"exceeding (?:their|his|her|its|the) (?:mailbox |disk |storage )?quota",
        r"exceeds? (?:his|her|the|its|their)? ?(?:disk |storage |mailbox )?quota",
        r"disk quota", r"exceeded (?:the )?(?:his |her |its )?(?:storage|quota)",
        r"storage (?:allocation|quota|space) (?:exceeded|is full|full)",
        r"exceeded storage allocation", r"insufficient (?:system )?storage",
        r"not enough (?:disk |storage )?space", r"out of storage", r"mail ?box space not enough",
        r"inbox is (?:full|out of storage)", r"mail ?folder is full", r"account is full", r"full mail ?box",
        r"boite (?:aux lettres )?pleine", r"boîte (?:aux lettres )?pleine", r"bo[iî]te .{0,20}(?:est )?pleine",
        r"postfach (?:ist )?voll", r"speicherplatz", r"casella (?:di posta )?piena", r"buz[oó]n (?:est[aá] )?lleno",
        r"user(?:'s)? (?:mailbox|disk|quota) .{0,40}(?:full|exceeded)",
        r"size of the mailbox .{0,30}exceed", r"the user has not enough space", r"mailbox over limit",
        r"requested mail action aborted: exceeded storage", r"too much mail data",
    )),
    ("mesgtoobig", _rx(
        r"message (?:size )?(?:exceeds|too (?:big|large))", r"mail (?:size|is) too (?:big|large)",
        r"message (?:is )?(?:too )?(?:big|large) for (?:this|the) (?:recipient|system|mailbox)",
        r"message length exceeds", r"size (?:limit )?exceed",
        r"exceeds? (?:the )?(?:fixed |maximum |max )?(?:message )?size",
        r"message (?:is )?larger than", r"message too long",
        r"exceeded (?:the )?(?:maximum |max )?(?:incoming )?(?:message )?size", r"recipsizelimit",
        r"maximum (?:message )?size",
        r"line too long", r"taille (?:du message )?(?:maximale )?(?:d[ée]pass[ée]e|trop)", r"nachricht (?:ist )?zu gro",
        r"message size limit",
    )),
    ("exceedlimit", _rx(
        r"message too big for (?:this )?mailbox", r"exceeds? (?:the )?(?:per-?user|administrative) (?:message )?limit",
        r"daily (?:sending |message )?(?:quota|limit)", r"too many (?:mails|messages) for (?:this )?(?:user|recipient)",
    )),
    ("suspend", _rx(
        r"account (?:is |has been )?(?:disabled|suspended|deactivated|inactive|blocked|locked|frozen|closed|expired)",
        r"mail ?box (?:is |has been )?(?:disabled|suspended|deactivated|frozen|closed|locked|not active)",
        r"(?:user|recipient|address)(?: \S+)? (?:is |has been )?(?:temporary |temporarily )?"
        r"(?:disabled|suspended|deactivated|locked)",
        r"disabled (?:recipient|user|mailbox|account)", r"is inactive\.? for more", r"has been inactive",
        r"email account that you tried to reach is (?:disabled|inactive)",
        r"recipient account is blocked", r"compte du destinataire est bloqu",
        r"compte (?:est )?(?:d[ée]sactiv|suspendu|bloqu)",
        r"konto (?:ist )?(?:gesperrt|deaktiviert)", r"account (?:disattivato|sospeso)",
        r"cuenta (?:suspendida|desactivada)",
        r"mailbox is frozen", r"user suspended", r"temporarily locked", r"extended inactivity",
        r"not currently being accepted for this mailbox",
    )),
    ("hasmoved", _rx(
        r"has moved", r"no longer (?:on|at) (?:this )?server", r"recipient no longer on server",
        r"not our (?:user|customer)",
        r"changed (?:his|her|their) (?:e-?mail )?address", r"address has changed", r"user has moved", r"new address",
        r"a chang[ée] d'adresse", r"adresse (?:a )?chang[ée]e",
    )),
    ("norelaying", _rx(
        r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)", r"not permitted to relay",
        r"unable to relay", r"relay not permitted", r"we do not relay", r"no relaying", r"relaying (?:is )?denied",
        r"not allowed to relay", r"(?:isn't|is not) in my list of allowed rcpthosts",
        r"not (?:a )?local (?:domain|host)",
        r"relay access", r"mail relay denied", r"sorry, that domain isn't in my list",
    )),
    ("authfailure", _rx(
        r"\bspf\b.{0,60}(?:fail|record|check|policy|not pass)", r"(?:fail|not pass)\w*.{0,30}\bspf\b", r"dmarc",
        r"\bdkim\b.{0,40}(?:fail|invalid|required|signature)", r"sender is unauthenticated",
        r"unauthenticated email", r"authentication checks? failed", r"does not have authentication information",
        r"is not allowed to send from",
        r"not authorized to send (?:mail )?(?:on behalf|for)",
    )),
    ("requireptr", _rx(
        r"reverse (?:dns|lookup|ip)", r"\bptr\b", r"\brdns\b", r"cannot find your hostname",
        r"no (?:valid )?host ?name",
        r"mismatches client ip", r"client host name", r"hostname (?:lookup|does not|doesn't)", r"ip name lookup failed",
        r"servers without a valid sender domain", r"cannot resolve your (?:address|hostname)",
        r"reverse (?:dns|lookup) fail",
        r"does not resolve to", r"fcrdns",
    )),
    ("virusdetected", _rx(
        r"virus", r"malware", r"infected", r"\bworm\b", r"trojan",
    )),
    ("spamdetected", _rx(
        r"\bspam\b(?! ?house)(?!haus)(?! ?cop)(?!rats)", r"\bube\b", r"unsolicited", r"junk mail",
        r"content (?:was )?rejected",
        r"message content rejected", r"bulk mail", r"classified as (?:spam|bulk)", r"looks like spam",
        r"spam ?score", r"\bsa\.\d", r"suspicious (?:content|message)", r"scam", r"phishing",
        r"message (?:was |has been )?(?:rejected|refused|blocked) (?:as|because|due to).{0,40}(?:spam|content)",
        r"mcspamsignature", r"rejected by .{0,30}content filter", r"\bsurbl\b", r"\buribl\b", r"dbl\.spamhaus",
    )),
    ("speeding", _rx(
        r"sent to too many recipients", r"sending rate", r"rate[- ]?limit(?:ed)?",
        r"too many messages? (?:in|per|from)",
        r"sending too (?:fast|many)", r"try again later.{0,30}(?:too many|volume)", r"unexpected volume",
        r"has exceeded .{0,20}(?:limit|rate)", r"throttl",
    )),
    ("toomanyconn", _rx(
        r"too many (?:connections|concurrent|simultaneous|sessions)", r"connection (?:limit|frequency)",
        r"frequency limited", r"too many smtp sessions", r"connection rate", r"max(?:imum)? (?:number of )?connections",
        r"too many hosts", r"too many open connections",
    )),
    ("badreputation", _rx(
        r"(?:ip|sender|domain) reputation", r"poor reputation", r"bad reputation", r"low reputation",
    )),
    ("blocked", _rx(
        r"blocked using", r"block ?list", r"black ?list", r"blocklisted", r"blacklisted",
        r"(?<!not )listed (?:in|at|on|by) ",
        r"\brbl\b", r"\bdnsbl\b", r"spamhaus", r"spamcop", r"sorbs", r"barracudacentral",
        r"client host .{0,60}(?:blocked|rejected|refused)",
        r"(?:\bip\b|client host|sending host|your host|connection)(?: address)? .{0,40}"
        r"(?:blocked|banned|refused|not allowed|rejected|denied)",
        r"banned sending ip", r"access denied, banned", r"blocked (?:ip|for spamming|by)", r"your ip",
        r"\bip (?:address )?(?:\S+ )?(?:is )?blocked",
        r"has been (?:temporarily )?blocked", r"adresse ip .{0,40}bloqu", r"not accepting connections",
        r"connection refused by",
        r"refused to talk to me", r"rejected your ip", r"host network not allowed",
        r"sender (?:ip|host) .{0,20}(?:rejected|refused)",
        r"service unavailable; client", r"\bbl\)",
    )),
    ("userunknown", _rx(
        r"user ?unknown", r"unknown (?:local[- ]?part|user|recipient|mailbox|address|e-?mail address|account)",
        r"no such (?:user|mailbox|recipient|address|person|account|local user)", r"unknown or illegal alias",
        r"user(?:name)? (?:\S+ )?(?:does not|doesn't|not) (?:exist|found|known)",
        r"not (?:a )?(?:valid|known) (?:user|recipient|mailbox|address)",
        r"(?:recipient|address|mailbox|user|account|e-?mail address) (?:\S+ )?(?:does not|doesn't|not) exists?",
        r"mailbox (?:is )?(?:unavailable|not available|not found|invalid|inactive)", r"mailbox unavailable",
        r"invalid (?:recipient|mailbox|address|user|e-?mail address)",
        r"recipient (?:not found|unknown|rejected|invalid)",
        r"address (?:invalid|unknown|not found)", r"user (?:not found|not listed|invalid|not active)",
        r"not listed in (?:the )?(?:domino directory|public name & address book|name & address book)", r"no mailbox",
        r"recipnotfound", r"recipientnotfound", r"adr\.recip", r"bad (?:destination mailbox|recipient|address)",
        r"badrcptto",
        r"not in my validrcptto", r"no account by that name", r"no existe", r"utilisateur inconnu",
        r"(?:adresse|destinataire|utilisateur|compte|bo[iî]te)\b.{0,60}n'existe pas",
        r"destinataire (?:inconnu|invalide)",
        r"adresse (?:destinataire )?invalide", r"destinataire invalide", r"unbekannt", r"gibt es nicht",
        r"existiert nicht",
        r"benutzer .{0,30}nicht", r"utente (?:sconosciuto|inesistente)", r"nessun utente",
        r"usuario (?:desconocido|inexistente|no existe)",
        r"inactive (?:email )?address", r"this user doesn't have a .{0,40}account", r"does not have an account",
        r"no one at this address", r"is not a known user",
        r"address (?:is )?(?:no longer|not) (?:valid|available|in use|active)",
        r"no longer (?:valid|available|active|in use)", r"unrouteable (?:local|user)", r"nonexist", r"non-existent",
        r"recipient address rejected: (?:access denied|invalid[ -]?(?:user|recipient)|user ?unknown|unknown user|"
        r"undeliverable|not found|user \S+ does not exist)",
        r"your envelope recipient", r"can't accept user",
        r"vdeliver", r"email address (?:could not be found|couldn't be found)", r"couldn't be found",
        r"could not be found",
        r"not a valid (?:recipient|mailbox|user)", r"name is not recognized", r"unknown recipient", r"does not exist",
        r"unknown address", r"address does not", r"invalid (?:e-?mail )?address", r"rejected: user",
        r"\bno such\b", r"mailbox .{0,30}(?:unavailable|not exist)", r"account .{0,40}(?:does not|doesn't) exist",
        r"unknown user", r"user .{0,40}not (?:listed|found|known)", r"dd this user", r"rcpt.{0,20}unknown",
        r"invalid (?:final delivery )?userid", r"no valid recipients?\b",
        r"please check if (?:the )?address is correct",  # InterScan MSS: the recipient was refused
        r"\u30ea\u30b9\u30c8\u306b\u3042\u308a\u307e\u305b\u3093",
        r"recipient address rejected(?:\.|$| \(in reply to rcpt)",
        r"\u898b\u3064\u304b\u308a\u307e\u305b\u3093", r"\u5b58\u5728\u3057\u307e\u305b\u3093",
        r"\u5b9b\u5148\u4e0d\u660e", r"\u30e6\u30fc\u30b6.{0,20}(?:\u3042\u308a\u307e\u305b\u3093|\u4e0d\u660e)",
    )),
    ("hostunknown", _rx(
        r"host ?unknown", r"unknown host", r"host (?:or domain )?(?:name )?not found", r"no such (?:domain|host)",
        r"domain (?:does not|doesn't) exist", r"domain (?:name )?not found", r"name or service not known",
        r"unrouteable",
        r"unroutable", r"domain (?:is )?(?:not reachable|unknown|invalid)", r"unknown domain", r"invalid domain",
        r"recipient domain must exist", r"domain must exist", r"host unreachable", r"nxdomain", r"no mx",
r"mail domain .{0,30}unknown", r"nom de domaine", r"domaine inconnu",
        r"not a valid domain", r"(?<![@\w.-])(?:[a-z0-9-]+\.)+[a-z]{2,} does not exist",
        r"mx (?:record|lookup) (?:not found|failed)", r"dns (?:error|failure|lookup)",
        r"host not found", r"domain lookup failed", r"couldn't find any host",
        r"could not be resolved", r"all relevant mx records point to non-existent hosts",
    )),
    ("notaccept", _rx(
        r"domain .{0,40}(?:doesn't|does not) receive", r"does not accept mail", r"doesn't accept mail",
        r"not accepting (?:any )?mail", r"null mx",
        r"accepts no mail", r"no smtp service", r"does not receive (?:e-?)?mail",
        r"smtp protocol returned a permanent error",
    )),
    ("policyviolation", _rx(
        r"policy (?:violation|reasons|rejection)", r"violat", r"prohibited", r"not allowed by (?:local )?policy",
        r"security policies", r"policy", r"multiple addresses in from", r"not permitted",
    )),
    ("notcompliantrfc", _rx(
        r"not rfc ?\d+ compliant", r"rfc ?5322", r"rfc ?2822", r"multiple (?:subject|from|to|date) headers",
        r"duplicate (?:header|subject)", r"malformed (?:message|header)",
    )),
    ("contenterror", _rx(
        r"headers? too (?:large|long)", r"media error", r"content[- ]type", r"\bmime\b", r"charset", r"encoding",
        r"too many headers",
        r"invalid (?:header|body)", r"message header", r"header (?:size|line)",
    )),
    ("securityerror", _rx(
        r"authentication (?:required|failed|is required)", r"smtp auth", r"turn on smtp authentication",
        r"authrequired", r"auth(?:entication)? (?:credentials )?invalid", r"tls (?:required|is required)",
        r"encryption required", r"starttls", r"certificate", r"must (?:issue a starttls|authenticate)",
        r"sender .{0,30}not (?:authorized|authorised)", r"access denied", r"not authorized", r"security",
    )),
    ("filtered", _rx(
        r"refused due to recipient preferences", r"recipient preferences", r"rejected by (?:the )?recipient",
        r"blocked by the recipient", r"user reject", r"refuse to receive", r"only accepting mail from",
        r"not accepting any mail", r"domain filter", r"address filter", r"mail filter", r"filtered",
        r"notauthorized", r"restricted", r"this account is protected",
    )),
    ("rejected", _rx(
        r"sender (?:address )?(?:rejected|refused|denied|blocked|verify failed)", r"sender verification",
        r"domain of sender address", r"sender domain", r"from address", r"mail from", r"envelope sender",
        r"return path", r"bad sender", r"sender (?:is )?(?:invalid|unknown)", r"responsible address",
        r"rejected", r"refused", r"denied", r"not accepted",
    )),
    ("systemfull", _rx(
        r"insufficient (?:system |disk )?(?:space|storage)", r"disk (?:is )?full", r"file system full",
        r"out of (?:disk )?space",
        r"system (?:is )?full", r"queue full",
    )),
    ("networkerror", _rx(
        r"routing loop", r"mail loop", r"message looping", r"looping detected", r"loops back", r"too many hops",
        r"hop count exceeded", r"loop detected",
        r"connection (?:reset|closed|dropped|lost)", r"lost connection", r"broken pipe",
        r"network (?:error|is unreachable|unreachable)",
        r"dns (?:query|lookup) failed", r"name server", r"malformed or unexpected name server reply", r"temporary dns",
        r"timed? ?out", r"timeout", r"no route to host", r"could not connect", r"couldn't connect",
    )),
    ("expired", _rx(
        r"message expired", r"maximum (?:number of )?delivery attempts", r"delivery failed \d+ attempts",
        r"queue\.expired", r"expired",
        r"delivery time expired", r"could not be delivered (?:within|for) \d",
        r"undelivered (?:for|after) (?:more than )?\d", r"gave up", r"give up",
        r"retry (?:time|timeout) (?:exceeded|expired)",
        r"deliver in \d+ minutes", r"has been delayed", r"not yet been delivered", r"delivery (?:is )?delayed",
        r"still (?:trying|being retried|undelivered)", r"will (?:keep|continue) trying", r"deferred",
        r"did not accept our requests to connect", r"(?:server|host) (?:is )?(?:not responding|unreachable)",
        r"connection refused",
    )),
    ("systemerror", _rx(
        r"system (?:error|config|configuration error|problem)", r"internal (?:server )?error", r"server error",
        r"service (?:currently )?(?:unavailable|not available)",
        r"temporar(?:y|ily) (?:failure|error|unavailable|local problem)",
        r"local (?:error|problem)", r"try (?:again )?later", r"service refus", r"server (?:busy|is busy)",
        r"configuration error", r"mail system problem", r"local delivery failed", r"i/o error", r"unable to deliver",
    )),
    ("mailererror", _rx(
        r"procmail", r"mailer error", r"mailer (?:error|program|failed)", r"command (?:failed|died)",
        r"exit (?:code|status)",
        r"x-unix;", r"pipe to", r"\|\s*/", r"/bin/", r"sh: ", r"permission denied", r"couldn't create",
        r"cannot (?:open|write)", r"errno", r"binary", r"program",
    )),
    ("syntaxerror", _rx(
        r"syntax error", r"improper sequence", r"bad sequence of commands",
        r"command (?:not )?(?:recognized|unrecognized)",
        r"unrecognized command", r"command unknown", r"bad syntax", r"line too long",
    )),
)

# RFC 3463 enhanced status codes (subject.detail) that say the reason by themselves. Used when the
# diagnostic text matched nothing, or to break a tie for a generic x.0.0 answer.
_STATUS_REASONS: dict[str, str] = {
    "1.1": "userunknown", "1.2": "hostunknown", "1.3": "userunknown", "1.4": "userunknown",
    "1.5": "userunknown", "1.0": "userunknown", "1.6": "hasmoved", "1.7": "rejected", "1.8": "rejected",
    "1.9": "systemerror", "1.10": "notaccept",
    "2.0": "filtered", "2.1": "filtered", "2.2": "mailboxfull", "2.3": "exceedlimit", "2.4": "systemerror",
    "3.0": "systemerror", "3.1": "systemfull", "3.2": "notaccept", "3.3": "systemerror",
    "3.4": "mesgtoobig", "3.5": "systemerror",
    "4.0": "networkerror", "4.1": "expired", "4.2": "networkerror", "4.3": "systemerror",
    "4.4": "hostunknown", "4.5": "systemfull", "4.6": "networkerror", "4.7": "expired",
    "5.0": "syntaxerror", "5.1": "syntaxerror", "5.2": "syntaxerror", "5.3": "exceedlimit",
    "5.4": "syntaxerror", "5.5": "syntaxerror", "5.6": "syntaxerror",
    "6.0": "contenterror", "6.1": "contenterror", "6.2": "contenterror", "6.3": "contenterror",
    "6.4": "contenterror", "6.5": "contenterror", "6.6": "contenterror", "6.7": "contenterror",
    "6.8": "contenterror", "6.9": "contenterror", "6.10": "contenterror",
    "7.0": "securityerror", "7.1": "rejected", "7.2": "systemerror", "7.3": "securityerror",
    "7.4": "securityerror", "7.5": "securityerror", "7.6": "securityerror", "7.7": "securityerror",
    "7.8": "securityerror", "7.9": "securityerror", "7.10": "securityerror", "7.11": "securityerror",
    "7.12": "securityerror", "7.13": "suspend", "7.14": "securityerror", "7.15": "securityerror",
    "7.16": "securityerror", "7.17": "suspend", "7.18": "suspend", "7.19": "securityerror",
    "7.20": "authfailure", "7.21": "authfailure", "7.22": "authfailure", "7.23": "authfailure",
    "7.24": "authfailure", "7.25": "requireptr", "7.26": "authfailure", "7.27": "notaccept",
}

# Reasons whose text evidence we trust over a specific status code; for the others a specific status
# (x.1.1, x.2.2, ...) is more reliable than loose words in a long diagnostic.
_WEAK_TEXT_REASONS = frozenset({
    "policyviolation", "contenterror", "securityerror", "rejected", "systemerror",
    "networkerror", "expired", "mailererror", "syntaxerror", "systemfull",
})

# Status-derived reasons too vague to beat words found elsewhere in the notice.
_VAGUE_STATUS_REASONS = frozenset({
    "systemerror", "syntaxerror", "networkerror", "securityerror", "rejected", "filtered", "contenterror",
})

# PowerMTA writes its own classification into the DSN (X-PowerMTA-BounceCategory).
POWERMTA_CATEGORIES: dict[str, str] = {
    "bad-mailbox": "userunknown", "bad-domain": "hostunknown", "quota-issues": "mailboxfull",
    "inactive-mailbox": "suspend", "spam-related": "spamdetected", "policy-related": "policyviolation",
    "virus-related": "virusdetected", "content-related": "contenterror", "message-expired": "expired",
    "no-answer-from-host": "networkerror", "bad-connection": "networkerror", "routing-errors": "systemerror",
    "protocol-errors": "syntaxerror", "relaying-issues": "norelaying", "invalid-sender": "rejected",
    "bad-configuration": "systemerror",
}

STATUS_RE = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
REPLY_CODE_RE = re.compile(r"(?<![\d.#-])([245]\d\d)(?=[ -]|$)")

_RCPT_STAGE = re.compile(
    r"rcpt to|rcpt_to|after rcpt|rcpt command|in reply to rcpt|most progress was rcpt|does not like recipient"
)
_MAIL_STAGE = re.compile(
    r"after mail from|in reply to mail from|mail from command|sender address rejected|\[mail_from\]|"
    r"mail from:<[^>]*>:? ?(?:size=\d+)?:? ?(?:host [^:]+: )?[45]\d\d"
)
_DATA_STAGE = re.compile(
    r"in reply to (?:end of )?data|after (?:end of )?data|end of data|data command|after data|"
    r"after the data|message body|while sending the message|data_to|\[data\]|smtp command\W+data\b|"
    r"for text command|did not like our final data"
)


_BARE_UNKNOWN = re.compile(r"\b[45]\d\d[ -]:? ?(?:#?[45]\.\d+\.\d+ )?(?:<[^>]*>:? ?|\S+@\S+ ?|: ?)?"
                           r"(?:user unknown|unknown user|no such user)\b")


def collapse(text: str) -> str:
    """Lower-case and collapse whitespace; bounded so pathological inputs stay cheap."""
    return " ".join(text[:8000].split()).lower()


def find_status(text: str) -> str | None:
    """The most specific RFC 3463 status code in a text (a non-x.0.0 one wins), or None."""
    best: str | None = None
    for m in STATUS_RE.finditer(text[:4000]):
        code = f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"
        if int(m.group(2)) > 7:
            continue
        if best is None or (best.endswith(".0.0") and not code.endswith(".0.0")):
            best = code
    return best


def find_reply_code(text: str) -> str | None:
    m = REPLY_CODE_RE.search(text[:4000])
    return m.group(1) if m else None


def smtp_stage(text: str) -> str | None:
    """Which SMTP command the remote server answered: "RCPT", "DATA" or None when the text does not say."""
    low = text.lower()
    if _MAIL_STAGE.search(low):
        return "MAIL"
    if _DATA_STAGE.search(low):
        return "DATA"
    if _RCPT_STAGE.search(low):
        return "RCPT"
    return None


def reason_from_status(status: str | None) -> str | None:
    if not status:
        return None
    parts = status.split(".")
    if len(parts) != 3:
        return None
    return _STATUS_REASONS.get(f"{int(parts[1])}.{int(parts[2])}")


def _match_text(text: str) -> tuple[str | None, bool]:
    """(reason, strong): strong when a priority phrase matched, or a reason whose words are specific."""
    low = collapse(text)
    if not low:
        return None, False
    for reason, pattern in _PRIORITY_RULES:
        if pattern.search(low):
            return reason, True
    for reason, pattern in _ORDERED_RULES:
        if pattern.search(low):
            return reason, reason not in _WEAK_TEXT_REASONS
    return None, False


def reason_from_text(text: str) -> str | None:
    return _match_text(text)[0]


def classify(diagnostic: str, status: str | None, *, delayed: bool = False, context: str = "") -> str:
    """Decide the reason for one recipient.

    `diagnostic` is the remote server's answer (Diagnostic-Code or the text next to the address);
    `context` is the wider human-readable notification, consulted only when the diagnostic says nothing.
    """
    text_reason, strong = _match_text(diagnostic)
    status_reason = reason_from_status(status)
    generic_status = status is None or status.endswith(".0.0")

    reason: str | None
    if text_reason and (generic_status or strong or status_reason is None):
        reason = text_reason
    elif status_reason and not (status_reason == "syntaxerror" and text_reason):
        reason = status_reason
        if text_reason is None and status_reason in _VAGUE_STATUS_REASONS and context:
            # "5.3.0" says little; the notice around it ("No such user here") says more.
            reason = reason_from_text(context) or status_reason
    else:
        reason = text_reason
    if reason is None and context:
        reason = reason_from_text(context)
    if reason is None:
        reason = "expired" if delayed else "undefined"

    # X.1.7 / X.1.8: the *sender* address was refused, whatever words follow.
    if status_reason == "rejected" and status is not None and status.split(".")[1] == "1":
        return "rejected"
    if reason == "hostunknown" and status is not None and status.startswith("4"):
        # A resolver failure the MTA itself calls temporary (Gmail's "DNS Error ... 4.0.0").
        return "networkerror"
    if reason in ("userunknown", "hostunknown"):
        stage = smtp_stage(diagnostic) or smtp_stage(context)
        if stage == "MAIL":
            # The remote server refused our MAIL FROM: it is about the list's sender address.
            return "rejected"
        if reason == "userunknown":
            # "User unknown" is a dead mailbox when the server says so where it decides about mailboxes:
            # at RCPT TO, or with an X.1.x address status. Japanese mobile carriers (docomo, au) answer
            # the same bare words after DATA when the recipient's own sender filter refuses the message,
            # and with an X.2.x (mailbox status) or X.7.x (security/policy) code the words are equally a
            # filter's refusal. Guessing "dead" there would unsubscribe members whose mailbox is fine.
            subject = status.split(".")[1] if status else ""
            bare_words = _BARE_UNKNOWN.search(collapse(diagnostic)) is not None
            if stage == "DATA" and bare_words and subject != "1":
                return "filtered"
            if subject in ("2", "7") and stage != "RCPT":
                return "filtered"
    return reason


def is_hard(reason: str, status: str | None, reply_code: str | None, *, delayed: bool) -> bool:
    """A hard bounce: the address itself is dead, so one such report is enough to stop mailing it."""
    if delayed:
        return False
    if reason in HARD_REASONS:
        # Even when the last answer was a 4xx ("450 4.1.1 user unknown"), an MTA that gave up on a
        # mailbox the remote side kept calling unknown has learned the address is dead.
        return True
    if reason == "notaccept":
        # A domain that publishes "no mail here" (null MX, 556/521) is as dead as an unknown host;
        # a 4xx "not accepting" is a server in maintenance.
        return not ((status and status.startswith("4")) or (reply_code and reply_code.startswith("4")))
    return False
