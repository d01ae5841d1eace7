"""Realistic forum data, generated fast: multilingual posts (FR, DE, IT, ES, EN) and bulk loading.

Words follow a Zipf distribution per language (a few words in most posts, a long tail in very few), as in
real discussions, so that "common" and "rare" queries hit the index the way they would in production.
The head of each vocabulary is the language's function words and the network's own topics (cross-border
work, transport, health, tax...); English is topped up from the r-help archive, French from the seeds; the
tail is made of pronounceable invented words with each language's letters (accents included), which are
what makes a query rare.
"""

from __future__ import annotations

import itertools
import random
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / ".." / "shared" / "corpus"
SEEDS = ROOT / ".." / "shared" / "seeds"

LANGUAGES = ("fr", "de", "it", "es", "en")
# Share of posts per language in a French-led cross-border network.
LANGUAGE_WEIGHTS = (0.45, 0.2, 0.1, 0.1, 0.15)

FUNCTION_WORDS = {
    "fr": "le la les de des du un une et est en que qui pour dans sur pas plus par ne ce il nous vous avec "
          "au aux sont ont été être cette mais ou comme son sa ses leur leurs tout très peut aussi donc si "
          "déjà où même entre sans après avant chez dont lors notre nos votre vos",
    "de": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem es wir sie auch an "
          "als nach wie bei oder aus wenn noch um nur über vor zur zum durch unter gegen schon können "
          "müssen wird werden haben hat sind diese dieser",
    "it": "il la di che è e un una per non in sono con si da le dei delle del della al alla come ma più "
          "anche gli ci questo questa ha hanno essere stato tra sulla sul nel nella già però quindi",
    "es": "el la de que y en los las un una por con no para es se del al lo como más pero sus le ya o "
          "este esta son ha han ser sobre entre también sin hasta desde porque muy cuando nuestro",
    "en": "the of and to in is that for it as with be on not this are by or from at have an we they but "
          "can which there has was were been would should could about into more also than",
}
TOPIC_WORDS = {
    "fr": "transfrontalier transfrontalière frontière frontaliers travailleurs fiscalité impôt santé "
          "hôpital assurance maladie transport tramway ligne bus gare train mobilité emploi formation "
          "apprentissage diplôme reconnaissance coopération eurodistrict groupement GECT collectivité "
          "commune région département préfecture État convention accord bilatéral obstacle solution "
          "juridique réglementation directive européenne financement Interreg projet subvention budget "
          "données statistiques observatoire aménagement territoire urbanisme logement eau déchets "
          "énergie environnement pompiers secours urgence police sécurité douane télétravail retraite "
          "allocations chômage famille crèche école lycée université langue bilinguisme culture tourisme "
          "vélo piste pont route autoroute parking covoiturage tarif billet abonnement horaires "
          "correspondance réunion atelier séminaire compte-rendu proposition question réponse exemple",
    "de": "grenzüberschreitend Grenze Grenzgänger Arbeitnehmer Steuer Besteuerung Gesundheit Krankenhaus "
          "Krankenversicherung Verkehr Straßenbahn Linie Bus Bahnhof Zug Mobilität Beschäftigung "
          "Ausbildung Abschluss Anerkennung Zusammenarbeit Eurodistrikt Verbund Gemeinde Landkreis Region "
          "Bundesland Staat Abkommen Vertrag Hindernis Lösung rechtlich Vorschrift Richtlinie europäisch "
          "Förderung Projekt Zuschuss Haushalt Daten Statistik Raumordnung Wohnung Wasser Abfall Energie "
          "Umwelt Feuerwehr Rettungsdienst Notfall Polizei Sicherheit Zoll Homeoffice Rente Kindergeld "
          "Arbeitslosigkeit Familie Kita Schule Gymnasium Universität Sprache Zweisprachigkeit Kultur "
          "Tourismus Fahrrad Radweg Brücke Straße Autobahn Parkplatz Fahrgemeinschaft Tarif Fahrkarte "
          "Fahrplan Anschluss Sitzung Workshop Protokoll Vorschlag Frage Antwort Beispiel Übergang",
    "it": "transfrontaliero frontiera frontalieri lavoratori fiscalità imposta sanità ospedale assicurazione "
          "malattia trasporto tram linea autobus stazione treno mobilità occupazione formazione diploma "
          "riconoscimento cooperazione comune regione provincia prefettura Stato accordo convenzione "
          "ostacolo soluzione giuridico normativa direttiva europea finanziamento progetto contributo "
          "bilancio dati statistiche territorio urbanistica abitazione acqua rifiuti energia ambiente "
          "vigili soccorso emergenza polizia sicurezza dogana telelavoro pensione disoccupazione famiglia "
          "asilo scuola università lingua bilinguismo cultura turismo bicicletta ponte strada autostrada "
          "parcheggio tariffa biglietto abbonamento orario coincidenza riunione proposta domanda risposta",
    "es": "transfronterizo frontera fronterizos trabajadores fiscalidad impuesto sanidad hospital seguro "
          "enfermedad transporte tranvía línea autobús estación tren movilidad empleo formación título "
          "reconocimiento cooperación municipio ayuntamiento región comunidad provincia Estado acuerdo "
          "convenio obstáculo solución jurídico normativa directiva europea financiación proyecto "
          "subvención presupuesto datos estadísticas territorio urbanismo vivienda agua residuos energía "
          "medio ambiente bomberos emergencia policía seguridad aduana teletrabajo jubilación desempleo "
          "familia guardería escuela universidad idioma bilingüismo cultura turismo bicicleta puente "
          "carretera autopista aparcamiento tarifa billete abono horario enlace reunión propuesta pregunta",
    "en": "cross-border border commuters workers taxation tax health hospital insurance transport tram line "
          "bus station train mobility employment training diploma recognition cooperation municipality "
          "region county state agreement treaty obstacle solution legal regulation directive european "
          "funding project grant budget data statistics planning housing water waste energy environment "
          "firefighters rescue emergency police security customs telework pension unemployment family "
          "childcare school university language bilingual culture tourism bicycle bridge road motorway "
          "parking carpooling fare ticket subscription timetable connection meeting workshop minutes "
          "proposal question answer example",
}
LETTERS = {
    "fr": ("b c d f g l m n p r s t v ch qu gn", "a e i o u é è ê ou ai au eau ien on an in"),
    "de": ("b d f g h k l m n p r s t w z sch st ch pf", "a e i o u ä ö ü ei au eu ie"),
    "it": ("b c d f g l m n p r s t v z gl gn sc", "a e i o u à è ì ò ù ia io"),
    "es": ("b c d f g j l m n ñ p r s t v z ll rr ch", "a e i o u á é í ó ú ue ie"),
    "en": ("b c d f g h k l m n p r s t v w th sh ch", "a e i o u ea ee oo ou ai"),
}
FIRST_NAMES = (
    "Camille", "Julia", "Luca", "Ana", "Tom", "Claire", "Jonas", "Giulia", "Javier", "Emma", "Hugo", "Lena",
    "Marco", "Lucía", "Oliver", "Sophie", "Felix", "Chiara", "Pablo", "Inès",
)
LAST_NAMES = (
    "Martin", "Schneider", "Rossi", "García", "Brown", "Dubois", "Weber", "Bianchi", "López", "Wilson",
    "Bernard", "Fischer", "Romano", "Fernández", "Taylor", "Laurent", "Wagner", "Ricci", "Martínez", "Müller",
)

CATEGORIES = (
    ("Travailleurs frontaliers", "travailleurs-frontaliers"), ("Santé", "sante"), ("Transports", "transports"),
    ("Fiscalité", "fiscalite"), ("Emploi et formation", "emploi-formation"), ("Aménagement", "amenagement"),
    ("Environnement", "environnement"), ("Sécurité civile", "securite-civile"), ("Langues", "langues"),
    ("Financements européens", "financements-europeens"), ("Données", "donnees"), ("Gouvernance", "gouvernance"),
)

_WORD = re.compile(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'-]{2,24}")


def _harvest(path: Path, limit_bytes: int, *, skip_headers: bool) -> list[str]:
    """Words of a real text, most frequent first (English from r-help, French from the seeds)."""
    try:
        data = path.read_bytes()[:limit_bytes].decode("utf-8", "replace")
    except OSError:
        return []
    if skip_headers:
        data = "\n".join(line for line in data.splitlines() if not re.match(r"^[A-Za-z-]+: ", line))
    counts: dict[str, int] = {}
    for word in _WORD.findall(data):
        counts[word.lower()] = counts.get(word.lower(), 0) + 1
    return [w for w, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c >= 2]


@dataclass
class Vocabulary:
    language: str
    words: list[str]
    cum_weights: list[float]
    topic_words: list[str]
    tail: list[str]

    def pick(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum_weights, k=k)


def _invented(rng: random.Random, language: str, count: int) -> list[str]:
    consonants, vowels = (part.split() for part in LETTERS[language])
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        syllables = rng.randint(3, 5)
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if rng.random() < 0.4:
            word += rng.choice(consonants)
        if word not in seen:
            seen.add(word)
            out.append(word)
    return out


def build_vocabularies(seed: int = 7, *, tail_size: int = 40_000) -> dict[str, Vocabulary]:
    rng = random.Random(seed)
    extra = {
        "en": _harvest(CORPUS / "r-help-pipermail" / "r-help-2019.mbox", 6_000_000, skip_headers=True)[:6000],
        "fr": list(itertools.chain.from_iterable(
            _harvest(p, 200_000, skip_headers=False) for p in sorted(SEEDS.glob("*")) if p.suffix != ".tsv"
        ))[:4000],
    }
    vocabularies = {}
    for language in LANGUAGES:
        function = FUNCTION_WORDS[language].split()
        topics = TOPIC_WORDS[language].split()
        harvested = [w for w in dict.fromkeys(extra.get(language, [])) if w not in function and w not in topics]
        tail = _invented(rng, language, tail_size)
        words = function + topics + harvested + tail
        # Zipf: the r-th word has weight 1/r; topic words are moved up so that each appears in a few
        # per cent of posts, the tail in a handful each.
        weights = [1.0 / (rank + 1) for rank in range(len(words))]
        for i in range(len(function), len(function) + len(topics)):
            weights[i] = 0.02
        for i in range(len(words) - len(tail), len(words)):
            weights[i] *= 0.15
        cum = list(itertools.accumulate(weights))
        vocabularies[language] = Vocabulary(language, words, cum, topics, tail)
    return vocabularies


@dataclass
class Post:
    language: str
    subject: str
    body: str
    author: int
    topic: int
    date: datetime


@dataclass
class Generator:
    """Posts grouped in topics (avg ``per_topic`` posts), over ``days`` days, by ``members`` authors."""

    seed: int = 1
    members: int = 2000
    per_topic: float = 4.0
    days: int = 3650
    start: datetime = datetime(2016, 1, 1, tzinfo=UTC)
    vocabularies: dict[str, Vocabulary] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        if not self.vocabularies:
            self.vocabularies = build_vocabularies()
        # Rare words that really occur in the generated posts (the second half of each tail), so that a
        # "rare" query finds a few messages instead of none.
        self.tail_sets = {k: set(v.tail[len(v.tail) // 2:]) for k, v in self.vocabularies.items()}
        self.used_rare: list[tuple[str, str]] = []

    def sentence(self, language: str, length: int | None = None) -> str:
        words = self.vocabularies[language].pick(self.rng, length or self.rng.randint(6, 18))
        words[0] = words[0][:1].upper() + words[0][1:]
        return " ".join(words) + self.rng.choice(".....?!")

    def body(self, language: str) -> str:
        paragraphs = []
        for _ in range(self.rng.randint(1, 4)):
            paragraphs.append(" ".join(self.sentence(language) for _ in range(self.rng.randint(1, 4))))
        return "\n\n".join(paragraphs)

    def subject(self, language: str) -> str:
        vocab = self.vocabularies[language]
        words = [self.rng.choice(vocab.topic_words) for _ in range(self.rng.randint(2, 4))]
        words += vocab.pick(self.rng, self.rng.randint(1, 3))
        return " ".join(words).capitalize()

    def posts(self, count: int) -> Iterator[Post]:
        topics = max(1, int(count / self.per_topic))
        span = timedelta(days=self.days).total_seconds()
        topic_language: dict[int, str] = {}
        topic_subject: dict[int, str] = {}
        for i in range(count):
            # Topics in date order, replies land in a recent topic most of the time.
            topic = int(i / count * topics)
            if self.rng.random() < 0.5:
                topic -= self.rng.randint(0, 3)
            topic = max(0, min(topics - 1, topic))
            if topic not in topic_language:
                topic_language[topic] = self.rng.choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
                topic_subject[topic] = self.subject(topic_language[topic])
            language = topic_language[topic]
            subject = topic_subject[topic] if i == 0 or self.rng.random() < 0.2 else "Re: " + topic_subject[topic]
            date = self.start + timedelta(seconds=span * i / count + self.rng.random() * 60)
            body = self.body(language)
            if i % 50 == 0 and len(self.used_rare) < 5000:
                tail = self.tail_sets[language]
                self.used_rare.extend((language, w) for w in body.lower().split() if w in tail)
            yield Post(language, subject, body, self.rng.randrange(self.members), topic, date)

    def queries(self, kind: str, count: int) -> list[str]:
        """Search strings: "rare" (a tail word), "common" (a topic word), "two" (two topic words)."""
        out = []
        for _ in range(count):
            language = self.rng.choices(LANGUAGES, LANGUAGE_WEIGHTS)[0]
            vocab = self.vocabularies[language]
            if kind == "rare":
                out.append(self.rng.choice(self.used_rare)[1] if self.used_rare else self.rng.choice(vocab.tail))
            elif kind == "common":
                out.append(self.rng.choice(vocab.topic_words))
            elif kind == "two":
                out.append(" ".join(self.rng.sample(vocab.topic_words, 2)))
            else:
                raise ValueError(kind)
        return out


# --- bulk loading ---------------------------------------------------------------------------------------


def _progress(label: str, done: int, total: int, started: float) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    sys.stderr.write(f"\r{label}: {done}/{total} ({rate:,.0f}/s)   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def bulk_load(engine: Engine, count: int, *, seed: int = 1, list_name: str = "forum", batch: int = 5000,
              quiet: bool = False, instant: int = 0) -> tuple[dict[str, int], Generator]:
    """Insert ``count`` posts straight into an empty schema (list, organisations, members, topics, messages,
    search index), bypassing the gateway: the fastest way to a large archive. Returns ids of interest and
    the generator (its ``queries()`` know which rare words were used). Members are member<i>@example.org,
    all subscribed; the first ``instant`` receive posts by mail, the others take no mail."""
    from passerelle.models import Category, MailingList, Member, Message, Organisation, Subscription, Topic
    from passerelle.search import SEARCH_TABLE

    gen = Generator(seed=seed)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.monotonic()
    with engine.begin() as conn:
        list_id = conn.execute(insert(MailingList).values(
            name=list_name, title="Forum", description="", language="fr", default_public_access="full",
            created_at=now).returning(MailingList.id)).scalar_one()
        countries = ("FR", "DE", "IT", "ES", "LU", "BE", "CH")
        conn.execute(insert(Organisation), [
            {"name": f"Organisation {i}", "country": countries[i % len(countries)], "kind": "city",
             "border": "-".join(sorted({"FR", countries[i % len(countries)]}))}
            for i in range(200)
        ])
        conn.execute(insert(Member), [
            {"email": f"member{i}@example.org", "name": f"{gen.rng.choice(FIRST_NAMES)} {gen.rng.choice(LAST_NAMES)}",
             "organisation_id": 1 + i % 200, "language": LANGUAGES[i % 5], "created_at": now}
            for i in range(gen.members)
        ])
        conn.execute(insert(Subscription), [
            {"member_id": 1 + i, "list_id": list_id, "created_at": now,
             "delivery_mode": "instant" if i < instant else "nomail"} for i in range(gen.members)
        ])
        category_ids = conn.execute(insert(Category).returning(Category.id, sort_by_parameter_order=True), [
            {"list_id": list_id, "name": name, "slug": slug, "public_access": "full", "created_at": now}
            for name, slug in CATEGORIES
        ]).scalars().all()
    topic_ids: dict[int, int] = {}
    topic_rows: dict[int, dict] = {}
    names = {}
    with engine.connect() as conn:
        for row in conn.execute(text("SELECT id, name, email FROM members")):
            names[row.id] = (row.name, row.email)
    done = 0
    posts = gen.posts(count)
    message_pk = 0
    while done < count:
        chunk = list(itertools.islice(posts, batch))
        if not chunk:
            break
        with engine.begin() as conn:
            new_topics = []
            for post in chunk:
                if post.topic not in topic_ids and post.topic not in topic_rows:
                    topic_rows[post.topic] = {
                        "list_id": list_id, "subject": post.subject, "normalized_subject": post.subject.lower(),
                        "status": gen.rng.choice(("open", "answered", "answered", "closed")),
                        "category_id": gen.rng.choice(category_ids) if gen.rng.random() < 0.8 else None,
                        "author_id": post.author + 1, "created_at": post.date, "last_post_at": post.date,
                        "message_count": 0,
                    }
                    new_topics.append(post.topic)
            if new_topics:
                ids = conn.execute(insert(Topic).returning(Topic.id, sort_by_parameter_order=True),
                                   [topic_rows[t] for t in new_topics]).scalars().all()
                for t, tid in zip(new_topics, ids, strict=True):
                    topic_ids[t] = tid
                    del topic_rows[t]
            rows = []
            for post in chunk:
                message_pk += 1
                name, email = names[post.author + 1]
                rows.append({
                    "topic_id": topic_ids[post.topic], "message_id": f"bench-{seed}-{message_pk}@example.org",
                    "author_id": post.author + 1, "from_name": name, "from_addr": email,
                    "subject": post.subject, "date": post.date, "date_offset_minutes": 60,
                    "received_at": post.date, "body_text": post.body, "new_text": post.body, "source": "import",
                })
            conn.execute(insert(Message), rows)
        done += len(chunk)
        if not quiet:
            _progress("messages", done, count, started)
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE topics SET message_count = (SELECT count(*) FROM messages m WHERE m.topic_id = topics.id),"
            " last_post_at = (SELECT max(date) FROM messages m WHERE m.topic_id = topics.id)"
        ))
    index_started = time.monotonic()
    build_search_index(engine)
    if not quiet:
        sys.stderr.write(f"search index built in {time.monotonic() - index_started:.1f}s\n")
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("ANALYZE"))
        else:
            conn.execute(text(f"ANALYZE messages; ANALYZE topics; ANALYZE {SEARCH_TABLE}"))
    return {"list_id": list_id, "messages": done, "topics": len(topic_ids)}, gen


def build_search_index(engine: Engine) -> None:
    """Fill the search index from the messages table in bulk (what index_message does row by row)."""
    from passerelle import search

    table = search.SEARCH_TABLE
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(
                f"INSERT INTO {table}(rowid, subject, body, author) SELECT id, subject,"
                " coalesce(nullif(new_text, ''), body_text), trim(from_name || ' ' || from_addr) FROM messages"
            ))
            conn.execute(text(f"INSERT INTO {table}({table}) VALUES ('optimize')"))
        else:
            # Each post is stemmed in the language its text is in, guessed the way index_message guesses it
            # (into a temporary table), then one INSERT ... SELECT.
            rows = conn.execute(text("SELECT id, subject, left(coalesce(nullif(new_text, ''), body_text), 4000)"
                                     " FROM messages")).all()
            conn.execute(text("CREATE TEMPORARY TABLE bulk_stem (id integer PRIMARY KEY, config text NOT NULL)"))
            conn.execute(text("INSERT INTO bulk_stem (id, config) VALUES (:id, :config)"),
                         [{"id": row[0], "config": search.pg_stem_config(f"{row[1]}\n{row[2]}")} for row in rows])
            subject_tsv, document = search.pg_document_sql(
                "m.subject", "coalesce(nullif(m.new_text, ''), m.body_text)",
                "trim(m.from_name || ' ' || m.from_addr)", "b.config")
            conn.execute(text(
                f"INSERT INTO {table}(message_pk, subject_tsv, document) SELECT m.id, {subject_tsv}, {document}"
                " FROM messages m JOIN bulk_stem b ON b.id = m.id"))
            conn.execute(text("DROP TABLE bulk_stem"))
