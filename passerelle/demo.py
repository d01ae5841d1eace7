"""A small, realistic demo forum drawn from the network's own documents (../shared/seeds).

Members of cross-border bodies, cities, regions and state services from several countries describe
obstacles, answer each other, and moderators classify, close and escalate. The messages go through the real
ingest path (spool, rules, threading, archive, search index) like any mail would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .models import (
    Category,
    Escalation,
    MailingList,
    Member,
    Message,
    ModerationAction,
    Organisation,
    Subscription,
    Tag,
    Topic,
)
from .text import slugify

log = logging.getLogger(__name__)

ORGANISATIONS = [
    # name, country, kind, border
    ("Eurométropole Lille-Kortrijk-Tournai", "FR", "cross-border body", "BE-FR"),
    ("Eurodistrict Strasbourg-Ortenau", "FR", "cross-border body", "DE-FR"),
    ("Landkreis Lörrach", "DE", "region", "DE-FR"),
    ("Grand Besançon Métropole", "FR", "city", "CH-FR"),
    ("République et canton du Jura", "CH", "region", "CH-FR"),
    ("Ville de Menton", "FR", "city", "FR-IT"),
    ("Comune di Ventimiglia", "IT", "city", "FR-IT"),
    ("GECT Hospital de la Cerdanya", "ES", "cross-border body", "ES-FR"),
    ("Pôle métropolitain du Sillon lorrain", "FR", "region", "FR-LU"),
    ("Ministère de l'Intérieur — coordination transfrontalière", "FR", "state service", ""),
    ("Mission Opérationnelle Transfrontalière", "FR", "expert", ""),
]

MEMBERS = [
    # email, name, organisation index, role, mode, language, timezone
    ("claire.dubois@mot.example", "Claire Dubois", 10, "owner", "instant", "fr", "Europe/Paris"),
    ("julien.roux@mot.example", "Julien Roux", 10, "moderator", "daily", "fr", "Europe/Paris"),
    ("camille.martin@eurometropole.example", "Camille Martin", 0, "member", "instant", "fr", "Europe/Paris"),
    ("anne.keller@eurodistrict.example", "Anne Keller", 1, "member", "instant", "fr", "Europe/Paris"),
    ("markus.weber@loerrach.example", "Markus Weber", 2, "member", "weekly", "de", "Europe/Berlin"),
    ("sophie.girard@besancon.example", "Sophie Girard", 3, "member", "instant", "fr", "Europe/Paris"),
    ("luc.chappuis@jura.example", "Luc Chappuis", 4, "member", "daily", "fr", "Europe/Zurich"),
    ("paul.bianchi@menton.example", "Paul Bianchi", 5, "member", "instant", "fr", "Europe/Paris"),
    ("giulia.rossi@ventimiglia.example", "Giulia Rossi", 6, "member", "instant", "it", "Europe/Rome"),
    ("jordi.puig@hcerdanya.example", "Jordi Puig", 7, "member", "daily", "es", "Europe/Madrid"),
    ("nicolas.henry@sillonlorrain.example", "Nicolas Henry", 8, "member", "nomail", "fr", "Europe/Paris"),
    ("helene.morel@interieur.example", "Hélène Morel", 9, "member", "weekly", "fr", "Europe/Paris"),
]

CATEGORIES = [
    ("Santé", "full"),
    ("Mobilité et transports", "full"),
    ("Emploi, fiscalité et protection sociale", "titles"),
    ("Enseignement supérieur et recherche", "full"),
    ("Gouvernance et outils juridiques", "titles"),
]


@dataclass(frozen=True)
class Post:
    author: int  # index in MEMBERS
    body: str
    days: float  # days after the topic started
    reply_to: int | None = None  # index of the post it answers in the same topic
    subject: str | None = None


@dataclass(frozen=True)
class DemoTopic:
    subject: str
    category: int
    posts: tuple[Post, ...]
    tags: tuple[str, ...] = ()
    close: str | None = None
    escalate: tuple[str, str] | None = None
    age_days: float = 30


TOPICS = [
    DemoTopic(
        "Remboursement des soins à l'Hospital de la Cerdanya pour les patients français",
        0,
        (
            Post(9, "Bonjour à tous,\n\nDepuis l'ouverture de l'hôpital transfrontalier de Puigcerdà, les patients "
                    "français sont soignés côté espagnol, mais les caisses primaires nous renvoient encore des "
                    "demandes d'autorisation préalable (formulaire S2) pour des soins programmés.\n\nQuelqu'un a-t-il "
                    "obtenu une convention qui dispense de cette autorisation ?\n\nJordi Puig\nGECT Hospital de la "
                    "Cerdanya", 0),
            Post(0, "Bonjour Jordi,\n\nL'accord-cadre franco-espagnol sur la coopération sanitaire transfrontalière "
                    "(2008) permet une convention locale signée par l'ARS Occitanie et la CPAM des Pyrénées-Orientales "
                    "qui dispense d'autorisation préalable pour la zone couverte. Nous avons le modèle utilisé pour "
                    "MOSAR dans les Ardennes : je vous l'envoie.\n\nClaire Dubois\nMOT", 1.2, 0),
            Post(9, "Merci Claire, c'est exactement ce qu'il nous fallait. La convention est en cours de signature, "
                    "l'ARS nous a répondu favorablement.\n\nJordi", 9, 1),
        ),
        tags=("soins", "sécurité-sociale"),
        close="solved",
        age_days=60,
    ),
    DemoTopic(
        "Télétravail des frontaliers : seuil fiscal et sécurité sociale",
        2,
        (
            Post(10, "Bonjour,\n\nNos frontaliers qui travaillent au Luxembourg dépassent le seuil de 34 jours de "
                    "télétravail prévu par l'accord fiscal. Les employeurs hésitent à l'autoriser. Comment les autres "
                    "frontières gèrent-elles cela, notamment pour l'affiliation à la sécurité sociale (accord-cadre "
                    "européen de 2023, 49,9 %) ?\n\nNicolas Henry", 0),
            Post(4, "Hallo zusammen,\n\nbei uns gilt seit 2023 die deutsch-französische Verständigungsvereinbarung; "
                    "für die Sozialversicherung haben wir das EU-Rahmenabkommen unterzeichnet. Die Steuerfrage bleibt "
                    "schwierig.\n\nViele Grüße\nMarkus Weber", 2, 0),
            Post(5, "Côté suisse, la situation est similaire : l'accord amiable franco-suisse fixe 40 % de "
                    "télétravail. Mais pour nous c'est une question qui doit remonter au niveau national : "
                    "les seuils diffèrent d'une frontière à l'autre et aucun acteur local ne peut les "
                    "harmoniser.\n\nSophie Girard", 4, 0),
        ),
        tags=("télétravail", "fiscalité"),
        escalate=("national", "Seuils de télétravail différents selon les frontières ; harmonisation demandée."),
        age_days=40,
    ),
    DemoTopic(
        "Ligne de bus transfrontalière Menton – Vintimille : billettique commune",
        1,
        (
            Post(7, "Bonjour,\n\nNous souhaitons un titre de transport unique pour la ligne 100 prolongée jusqu'à "
                    "Vintimille. Les systèmes billettiques français et italien ne sont pas interopérables. Des "
                    "exemples ailleurs ?\n\nPaul Bianchi\nVille de Menton", 0),
            Post(8, "Buongiorno,\n\nil Comune di Ventimiglia è interessato. La Regione Liguria finanzia un "
                        "progetto Interreg ALCOTRA sulla bigliettazione integrata: potremmo presentare una "
                        "candidatura comune.\n\nGiulia Rossi", 1, 0),
            Post(3, "Bonjour Paul,\n\nÀ Strasbourg-Kehl, le tram D utilise un ticket commun CTS/TGO depuis 2017 ; le "
                    "partage des recettes se fait par convention. Je peux vous mettre en contact avec l'Eurodistrict."
                    "\n\nAnne Keller", 3, 0),
        ),
        tags=("bus", "billettique", "interreg"),
        age_days=12,
    ),
    DemoTopic(
        "Reconnaissance des diplômes d'infirmier entre la France et la Suisse",
        0,
        (
            Post(6, "Bonjour,\n\nLes hôpitaux jurassiens recrutent des infirmières formées en France, mais la "
                    "reconnaissance par la Croix-Rouge suisse prend plus de six mois. Est-ce un obstacle connu ? "
                    "\n\nLuc Chappuis\nRépublique et canton du Jura", 0),
        ),
        tags=("diplômes",),
        age_days=3,
    ),
    DemoTopic(
        "Doctorants en cotutelle : statut et couverture sociale",
        3,
        (
            Post(5, "Bonjour,\n\nL'université de Franche-Comté accueille des doctorants en cotutelle avec "
                    "l'université de Neuchâtel. Leur contrat doctoral est français mais ils passent la moitié du "
                    "temps en Suisse. Quelle couverture sociale ?\n\nSophie Girard", 0),
            Post(1, "Bonjour Sophie,\n\nC'est la règle de l'activité substantielle (25 %) du règlement 883/2004 qui "
                    "s'applique, via l'accord sur la libre circulation. Le doctorant reste affilié en France s'il y "
                    "exerce au moins 25 % de son activité. Le formulaire A1 est à demander à l'URSSAF.\n\nJulien Roux"
                    "\nMOT", 1, 0),
        ),
        tags=("recherche", "sécurité-sociale"),
        close="solved",
        age_days=20,
    ),
    DemoTopic(
        "Créer un GECT pour gérer un service public commun : retours d'expérience",
        4,
        (
            Post(2, "Bonjour,\n\nL'Eurométropole réfléchit à confier la gestion d'un service de transport à un GECT. "
                    "Quelles sont les limites juridiques (droit applicable, personnel, marchés publics) ?\n\nCamille "
                    "Martin", 0),
            Post(0, "Bonjour Camille,\n\nLe règlement (CE) 1082/2006 modifié permet au GECT de gérer un service "
                    "public, mais le droit applicable au personnel reste celui du siège. Le GECT Hospital de la "
                    "Cerdanya est l'exemple le plus abouti ; voir aussi notre guide pratique.\n\nClaire", 2, 0),
            Post(11, "Bonjour,\n\nPour les marchés publics, la directive 2014/24/UE s'applique selon le droit du "
                     "siège ; une étude juridique plus approfondie nous semble nécessaire avant toute décision."
                     "\n\nHélène Morel", 5, 1),
        ),
        tags=("gect",),
        close="study-needed",
        age_days=50,
    ),
    DemoTopic(
        "Ambulances : franchir la frontière en intervention d'urgence",
        0,
        (
            Post(3, "Bonjour,\n\nUne ambulance allemande ne peut pas transporter un patient vers Strasbourg sans "
                    "accord préalable ; le droit de circulation des véhicules prioritaires n'est pas reconnu. "
                    "L'accord-cadre de 2005 est-il applicable ?\n\nAnne Keller", 0),
            Post(4, "Guten Tag,\n\ndie Rahmenvereinbarung von 2005 erlaubt es, aber die Durchführungsvereinbarung "
                    "für den Oberrhein fehlt noch. Das Problem liegt auf nationaler Ebene.\n\nMarkus Weber", 1, 0),
        ),
        tags=("urgences", "soins"),
        escalate=("european", "Reconnaissance mutuelle des véhicules d'urgence : à porter au mécanisme européen."),
        age_days=25,
    ),
    DemoTopic(
        "Bonne pratique : un guichet d'information commun pour les frontaliers",
        2,
        (
            Post(2, "Bonjour à tous,\n\nNous partageons l'expérience du guichet Infobest ouvert avec nos partenaires "
                    "belges : une permanence commune, des fiches par situation (emploi, retraite, impôts) et une "
                    "ligne téléphonique bilingue. 4 000 demandes traitées en 2023.\n\nCamille Martin", 0),
            Post(10, "Merci Camille, nous aimerions reproduire ce modèle sur le Sillon lorrain. Quel financement ?"
                     "\n\nNicolas", 1, 0),
            Post(2, "Un cofinancement Interreg à 60 %, le reste réparti entre les partenaires selon la population."
                    "\n\nCamille", 2, 1),
        ),
        tags=("bonne-pratique", "information"),
        age_days=8,
    ),
]


@dataclass(frozen=True)
class DemoSheet:
    """A sheet a moderator made from a demo topic (``#sheet``), then completed and published on the web."""

    topic: int  # index in TOPICS
    kind: str  # "obstacle" or "practice"
    title: str
    fields: tuple[tuple[str, str], ...]  # what the moderator completed or rewrote in the pre-filled draft
    solution_note: str = ""  # a paragraph the moderator added after the quoted answers


SHEETS = [
    DemoSheet(
        0, "obstacle",
        "Soins programmés à l'Hospital de la Cerdanya : l'autorisation préalable (S2) exigée des patients français",
        (
            ("domain", "Santé — accès aux soins transfrontaliers"),
            ("level", "regional"),
            ("solution_status", "found"),
            ("legal_references", "Accord-cadre franco-espagnol sur la coopération sanitaire transfrontalière "
                                 "(2008)\nRèglement (CE) n° 883/2004, article 20 (soins programmés, formulaire S2)"),
        ),
        solution_note="Résultat : une convention locale entre l'ARS Occitanie, la CPAM des Pyrénées-Orientales et "
                      "le GECT dispense d'autorisation préalable les patients de la zone couverte ; l'ARS a donné "
                      "son accord, la convention est en cours de signature. Modèle réutilisable : la convention "
                      "MOSAR (Ardennes franco-belges).",
    ),
    DemoSheet(
        7, "practice",
        "Un guichet d'information commun pour les frontaliers franco-belges",
        (
            ("domain", "Information et accompagnement des frontaliers"),
            ("level", "local"),
            ("solution_status", "found"),
            ("legal_references", "Programme Interreg France-Wallonie-Vlaanderen (cofinancement FEDER)"),
        ),
        solution_note="Enseignements : 4 000 demandes traitées en 2023 ; une permanence commune et des fiches par "
                      "situation évitent de renvoyer le frontalier d'une administration à l'autre. Le Pôle "
                      "métropolitain du Sillon lorrain étudie la reprise du modèle à la frontière "
                      "franco-luxembourgeoise.",
    ),
]


def _load_sheets(session: Session, settings: Settings, topics: dict[int, Topic], moderator: Member) -> int:
    """Make, complete and publish the demo's sheets the way a moderator does (gateway.sheets); returns how
    many were published. Dated after the topic's last message, like the moderator's other actions."""
    from gateway import sheets as sheet_core

    published = 0
    for spec in SHEETS:
        topic = topics.get(spec.topic)
        if topic is None:
            continue
        made = topic.last_post_at + timedelta(hours=3)
        sheet = sheet_core.create_sheet_from_topic(session, settings, topic, spec.kind, moderator, now=made)
        session.add(ModerationAction(list_id=topic.list_id, topic_id=topic.id, actor_id=moderator.id, action="sheet",
                                     detail=f"{spec.kind} sheet #{sheet.id}", via="mail", created_at=made))
        data = dict(sheet.data or {})
        data.update(spec.fields)
        if spec.solution_note:
            data["solution"] = (str(data.get("solution") or "").rstrip() + "\n\n" + spec.solution_note).strip()
        title, clean, errors = sheet_core.validate({**data, "title": spec.title},
                                                   categories=[topic.category.name] if topic.category else None)
        if errors:
            raise ValueError(f"demo sheet of topic {spec.topic}: {errors}")
        edited = made + timedelta(days=1)
        sheet_core.save_version(session, sheet, title, clean, moderator, now=edited, via="web")
        sheet_core.set_status(session, sheet, "published", moderator, now=edited + timedelta(hours=1), via="web")
        published += 1
    return published


def _mail(settings: Settings, topic_no: int, post_no: int, post: Post, topic: DemoTopic, start: datetime,
          members: list[Member]) -> bytes:
    author = members[post.author]
    msg = EmailMessage()
    msg["From"] = f"{MEMBERS[post.author][1]} <{author.email}>"
    msg["To"] = settings.list_address(settings.lists.default_list)
    msg["Subject"] = post.subject or (topic.subject if post.reply_to is None else f"RE : {topic.subject}")
    msg["Date"] = format_datetime(start + timedelta(days=post.days, hours=post_no))
    msg["Message-ID"] = f"<demo.{topic_no}.{post_no}@{author.email.split('@')[1]}>"
    if post.reply_to is not None:
        parent = f"<demo.{topic_no}.{post.reply_to}@{members[topic.posts[post.reply_to].author].email.split('@')[1]}>"
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    msg.set_content(post.body)
    return bytes(msg)


def load_demo(session: Session, settings: Settings, *, factory: sessionmaker[Session], now: datetime) -> str:
    """Load the demo forum if the database has no list yet; returns a summary ("" when nothing was done)."""
    from gateway.inbound import spool_message
    from gateway.worker import process_pending

    if session.scalar(select(MailingList).limit(1)) is not None:
        return ""
    ml = MailingList(
        name=settings.lists.default_list,
        title="Forum du réseau transfrontalier",
        description="Obstacles à la coopération transfrontalière, réponses des pairs et des experts, bonnes "
        "pratiques. Écrivez à l'adresse du forum pour ouvrir un sujet ; répondez à un message pour y contribuer.",
        language="fr",
        default_public_access="titles",
        created_at=now - timedelta(days=90),
    )
    session.add(ml)
    orgs = [Organisation(name=n, country=c, kind=k, border=b) for n, c, k, b in ORGANISATIONS]
    session.add_all(orgs)
    session.flush()
    members: list[Member] = []
    subs: list[Subscription] = []
    for email, name, org, role, _mode, lang, tz in MEMBERS:
        m = Member(email=email, name=name, organisation_id=orgs[org].id, language=lang, timezone=tz,
                   is_operator=(role == "owner"), created_at=now - timedelta(days=90))
        session.add(m)
        session.flush()
        # Subscribed without mail while the archive is loaded: the demo history must not be fanned out.
        sub = Subscription(member_id=m.id, list_id=ml.id, role=role, delivery_mode="nomail", status="active",
                           accepted_posts=5, created_at=now - timedelta(days=90))
        session.add(sub)
        members.append(m)
        subs.append(sub)
    cats = [Category(list_id=ml.id, name=n, slug=slugify(n), public_access=a, created_at=now - timedelta(days=80))
            for n, a in CATEGORIES]
    session.add_all(cats)
    session.commit()

    for t_no, topic in enumerate(TOPICS):
        start = now - timedelta(days=topic.age_days)
        for p_no, post in enumerate(topic.posts):
            raw = _mail(settings, t_no, p_no, post, topic, start, members)
            spool_message(factory, raw, source="demo", envelope_from=members[post.author].email,
                          envelope_to=[settings.list_address(ml.name)], list_name=ml.name,
                          now=start + timedelta(days=post.days))
    while process_pending(settings, factory, now=now):
        pass

    moderator = members[1]
    db_topics: dict[int, Topic] = {}
    for t_no, topic in enumerate(TOPICS):
        first_id = f"demo.{t_no}.0@{members[topic.posts[0].author].email.split('@')[1]}"
        msg = session.scalar(select(Message).where(Message.message_id == first_id))
        if msg is None:
            log.warning("demo topic %d was not archived", t_no)
            continue
        db_topic = session.get(Topic, msg.topic_id)
        assert db_topic is not None
        db_topics[t_no] = db_topic
        db_topic.category_id = cats[topic.category].id
        db_topic.category = cats[topic.category]
        for name in topic.tags:
            tag = session.scalar(select(Tag).where(Tag.list_id == ml.id, Tag.name == name))
            if tag is None:
                tag = Tag(list_id=ml.id, name=name)
                session.add(tag)
            db_topic.tags.append(tag)
        when = db_topic.last_post_at + timedelta(hours=2)
        session.add(ModerationAction(list_id=ml.id, topic_id=db_topic.id, actor_id=moderator.id, action="category",
                                     detail=CATEGORIES[topic.category][0], via="mail", created_at=when))
        if topic.close:
            db_topic.status, db_topic.outcome, db_topic.closed_at = "closed", topic.close, when
            session.add(ModerationAction(list_id=ml.id, topic_id=db_topic.id, actor_id=moderator.id, action="close",
                                         detail=topic.close, via="mail", created_at=when))
        if topic.escalate:
            level, note = topic.escalate
            db_topic.escalation_level = level
            session.add(Escalation(topic_id=db_topic.id, level=level, note=note, escalated_by_id=moderator.id,
                                   escalated_at=when, updated_at=when, state="escalated"))
            session.add(ModerationAction(list_id=ml.id, topic_id=db_topic.id, actor_id=moderator.id,
                                         action="escalate", detail=f"{level}: {note}", via="mail", created_at=when))
    session.flush()
    published = _load_sheets(session, settings, db_topics, moderator)
    for sub, spec in zip(subs, MEMBERS, strict=True):
        session.merge(sub).delivery_mode = spec[4]
    posts = sum(len(t.posts) for t in TOPICS)
    return (f"{len(TOPICS)} topics, {posts} messages, {len(MEMBERS)} members, {len(ORGANISATIONS)} organisations, "
            f"{published} published sheets")
