"""Loaders for the information-extraction sets in the data folder (:func:`kexue.env.data_dir`), the English stand-ins
for the three LIC2020 baselines ("bert4keras在手，baseline我有：百度LIC2020", 2020-04-02,
https://kexue.fm/archives/7321) and two of the Chinese originals, for format tests.

* :func:`load_conll2003`: CoNLL-2003 English NER (BIO + CRF), sentences of tokens with IOB2 tags;
* :func:`load_phee`: PHEE pharmacovigilance events (the closest English analogue of DuEE), typed argument spans
  with character offsets, discontinuous ones kept as pieces;
* :func:`load_webnlg`, :func:`load_webnlg_relations`: WebNLG in CasRel's format (subject–object pointers), the
  exact-span version and WebNLG* (last word of each entity);
* :func:`load_squad`: SQuAD v1.1 dev (span pointer), with article titles to split by article
  (:func:`split_by_article`: no paragraph on both sides);
* :func:`load_duee`, :func:`load_duee_schema`, :func:`load_dureader_robust`: the LIC2020 dev sets themselves.

Every loader returns plain ``NamedTuple`` records; every character offset is checked against its text when read
(a mismatch raises ``ValueError`` naming the file and record). A set that is not in the data folder raises
:class:`~kexue.data.registry.MissingData` naming it and the command that fetches it (``kexue data fetch phee``).
``root`` is the data folder; default :func:`kexue.env.data_dir`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from .._validate import check_choice, check_int
from ..env import data_dir
from .datasets import _path
from .registry import _as_path

#: The splits of CoNLL-2003 and PHEE.
ExtractionSplit = Literal["train", "dev", "test"]
#: The splits of WebNLG (CasRel's file names).
WebNLGSplit = Literal["train", "val", "test"]
#: ``"exact"``: full entity spans (ETL-span's WebNLG, scored by exact match); ``"star"``: CasRel's WebNLG*, each
#: entity only its last word (scored by last-word match; the two are not comparable).
WebNLGVariant = Literal["exact", "star"]

_WEBNLG_FOLDERS: dict[WebNLGVariant, str] = {"exact": "WebNLG", "star": "WebNLG-star"}


class TaggedSentence(NamedTuple):
    """One CoNLL sentence: ``tokens`` with their NER ``tags`` (IOB2), part-of-speech and chunk tags, and the index
    of its document (``-DOCSTART-`` lines start a document)."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]
    pos: tuple[str, ...]
    chunks: tuple[str, ...]
    document: int


class Argument(NamedTuple):
    """A typed mention in a text: ``role`` (dotted for PHEE's sub-arguments, ``"Treatment.Drug"``; ``"Trigger"``
    for the trigger), its ``pieces`` as character ``(start, end)`` pairs, end excluded (several for a discontinuous
    span, in the annotation's order, which is not always the text's), the ``text`` of each piece
    (``text[i] == context[start_i:end_i]``), the annotation's ``entity_id`` (PHEE) and ``value`` (PHEE's
    attributes: ``Severity`` ``"High"``/``"Low"``, ``Speculated``/``Negated`` ``True``)."""

    role: str
    pieces: tuple[tuple[int, int], ...]
    text: tuple[str, ...]
    entity_id: str = ""
    value: str | bool | None = None

    @property
    def start(self) -> int:
        """The first character of the mention (of its earliest piece)."""
        return min(s for s, _ in self.pieces)

    @property
    def end(self) -> int:
        """One past the last character of the mention (of its latest piece)."""
        return max(e for _, e in self.pieces)


class Event(NamedTuple):
    """An event: its type, ``trigger``, ``arguments`` (every mention of every role, repeated ones kept), and for PHEE
    the ``combinations`` (drug-combination sub-events of the treatment, with their own trigger and ``Drug``
    arguments)."""

    event_type: str
    trigger: Argument
    arguments: tuple[Argument, ...]
    event_id: str = ""
    combinations: tuple[Event, ...] = ()


class EventSentence(NamedTuple):
    """A sentence (PHEE ``context``, DuEE ``text``) with its events."""

    id: str
    text: str
    events: tuple[Event, ...]


class Triple(NamedTuple):
    subject: str
    predicate: str
    object: str


class RelationSentence(NamedTuple):
    """A WebNLG sentence (pre-tokenized, tokens joined by spaces) and its triples; every subject and object occurs
    in the text."""

    text: str
    triples: tuple[Triple, ...]


class Answer(NamedTuple):
    """A gold answer and its character offset in the context (``context[start:start + len(text)] == text``)."""

    text: str
    start: int


class QAExample(NamedTuple):
    """A question on a paragraph of an article (``title``), with its gold answers (score EM/F1 as the max over
    them)."""

    id: str
    title: str
    context: str
    question: str
    answers: tuple[Answer, ...]


class QASplit(NamedTuple):
    train: list[QAExample]
    test: list[QAExample]


def _base(root: str | Path | None) -> Path:
    return data_dir() if root is None else _as_path("root", root)


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield lineno, json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}, line {lineno}: expected a JSON record, got a line that is not JSON "
                                     f"({e})") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: expected a JSON document, got a file that is not JSON ({e})") from None


@contextmanager
def _record(where: str, what: str) -> Iterator[None]:
    """Turn the error of a record without the expected fields into ``ValueError`` naming the file and record."""
    try:
        yield
    except (KeyError, TypeError, IndexError, AttributeError) as e:
        raise ValueError(f"{where}: expected {what}, got a record that does not fit ({type(e).__name__}: {e})") \
            from None


def _check_offset(where: str, context: str, text: str, start: int) -> tuple[int, int]:
    if context[start:start + len(text)] != text or start < 0:
        raise ValueError(f"{where}: expected {text!r} at character {start}, got "
                         f"{context[max(start, 0):max(start, 0) + len(text)]!r}")
    return start, start + len(text)


def load_conll2003(split: ExtractionSplit = "train", root: str | Path | None = None) -> list[TaggedSentence]:
    """CoNLL-2003 English NER (``conll2003/{split}.txt``: ``word POS chunk NER`` per line, a blank line between
    sentences, ``-DOCSTART-`` lines skipped). Sentences / tokens / documents / entities: train 14,041 / 203,621 /
    946 / 23,499, dev (eng.testa) 3,250 / 51,362 / 216 / 5,942, test (eng.testb) 3,453 / 46,435 / 231 / 5,648."""
    check_choice("split", split, ExtractionSplit)
    path = _path(_base(root), "conll2003", f"{split}.txt")
    out: list[TaggedSentence] = []
    document = -1
    lines = path.read_text(encoding="utf-8").split("\n")
    rows: list[list[str]] = []
    for lineno, line in enumerate([*lines, ""], start=1):
        fields = line.split()
        if len(fields) == 4 and fields[0] != "-DOCSTART-":
            rows.append(fields)
            continue
        if rows:  # a blank line, a document start or the end of the file closes the sentence
            words, pos, chunks, tags = zip(*rows, strict=True)
            out.append(TaggedSentence(words, tags, pos, chunks, document))
            rows = []
        if fields and fields[0] == "-DOCSTART-":
            document += 1
        elif fields:
            raise ValueError(f"{path}, line {lineno}: expected 4 space-separated fields (word POS chunk NER), "
                             f"got {len(fields)}")
    return out


def _phee_mentions(role: str, node: dict[str, Any], context: str, where: str) -> list[Argument]:
    out = []
    texts, starts, ids = node["text"], node["start"], node["entity_id"]
    if not len(texts) == len(starts) == len(ids) or any(len(t) != len(s) for t, s in zip(texts, starts)):
        raise ValueError(f"{where}, {role}: expected as many starts and entity ids as texts, piece for piece, got "
                         f"texts {texts}, starts {starts}, entity ids {ids}")
    for pieces, starts_, entity in zip(texts, starts, ids):
        spans = tuple(_check_offset(f"{where}, {role}", context, t, s) for t, s in zip(pieces, starts_))
        out.append(Argument(role, spans, tuple(pieces), entity, node.get("value")))
    return out


def _phee_event(ev: dict[str, Any], context: str, where: str) -> Event:
    trigger, *more = _phee_mentions("Trigger", ev["Trigger"], context, where)
    args: list[Argument] = more
    combos: list[Event] = []
    for key, node in ev.items():
        if key in ("event_id", "event_type", "Trigger"):
            continue
        args += _phee_mentions(key, node, context, where)
        for sub, subnode in node.items():
            if sub == "Combination":
                combos += [_phee_event(c, context, f"{where}, combination") for c in subnode]
            elif isinstance(subnode, dict):
                args += _phee_mentions(f"{key}.{sub}", subnode, context, where)
    return Event(ev["event_type"], trigger, tuple(args), ev.get("event_id", ""), tuple(combos))


def load_phee(split: ExtractionSplit = "train", root: str | Path | None = None) -> list[EventSentence]:
    """PHEE (``phee/{split}.json``, JSON lines): sentences from MEDLINE case reports with ``Adverse_event`` and
    ``Potential_therapeutic_event`` events. Arguments: ``Subject``, ``Treatment``, ``Effect``, the sub-arguments
    ``Subject.{Age,Gender,Population,Race,Disorder}`` and ``Treatment.{Drug,Dosage,Route,Freq,Duration,
    Time_elapsed,Disorder}`` (nested in their parent's span), the attributes ``Speculated``, ``Negated``,
    ``Severity`` (with ``value``); each mention of each role is one :class:`Argument`, a discontinuous one with
    several pieces. Sentences / events: train 2,898 / 3,006, dev 961 / 1,003, test 968 / 1,010 (Sun et al., EMNLP
    2022)."""
    check_choice("split", split, ExtractionSplit)
    path = _path(_base(root), "phee", f"{split}.json")
    out = []
    for lineno, rec in _json_lines(path):
        where = f"{path}, line {lineno}"
        with _record(where, "a PHEE record (id, context, annotations: [{events: [...]}])"):
            annotations = rec["annotations"]
            if len(annotations) != 1:
                raise ValueError(f"{where}: expected one annotation set, got {len(annotations)}")
            events = tuple(_phee_event(ev, rec["context"], where) for ev in annotations[0]["events"])
            out.append(EventSentence(rec["id"], rec["context"], events))
    return out


def load_webnlg(split: WebNLGSplit = "train", variant: WebNLGVariant = "exact",
                root: str | Path | None = None) -> list[RelationSentence]:
    """WebNLG in CasRel's JSON (``webnlg/WebNLG/{split}_triples.json``; ``variant="star"``: ``WebNLG-star/``).
    Sentences / triples: exact train 5,019 / 11,313, val 500 / 1,224, test 703 / 1,607; star train 5,019 /
    11,776, val 500 / 1,118, test 703 / 1,591. A subject or object missing from its text raises ``ValueError``."""
    check_choice("split", split, WebNLGSplit)
    check_choice("variant", variant, WebNLGVariant)
    path = _path(_base(root), "webnlg", _WEBNLG_FOLDERS[variant], f"{split}_triples.json")
    out = []
    for i, rec in enumerate(_json(path)):
        with _record(f"{path}, record {i}", "a CasRel record (text, triple_list of [subject, predicate, object])"):
            text = rec["text"]
            triples = tuple(Triple(*t) for t in rec["triple_list"])
            for t in triples:
                for name, value in (("subject", t.subject), ("object", t.object)):
                    if value not in text:
                        raise ValueError(f"{path}, record {i}: expected the {name} {value!r} in the text, got "
                                         f"{text!r}")
            out.append(RelationSentence(text, triples))
    return out


def load_webnlg_relations(variant: WebNLGVariant = "exact", root: str | Path | None = None) -> dict[str, int]:
    """Predicate -> id from ``rel2id.json`` (216 predicates exact, 171 star), read from either of its shapes:
    ``[{rel: id}]`` (WebNLG) or ``[{id: rel}, {rel: id}]`` (WebNLG*, whose two halves must agree)."""
    check_choice("variant", variant, WebNLGVariant)
    path = _path(_base(root), "webnlg", _WEBNLG_FOLDERS[variant], "rel2id.json")
    data = _json(path)
    with _record(str(path), "[rel2id] or [id2rel, rel2id]"):
        if isinstance(data, list) and len(data) == 1:
            rel2id = data[0]
        elif isinstance(data, list) and len(data) == 2:
            id2rel, rel2id = data
            if {r: int(k) for k, r in id2rel.items()} != rel2id:
                raise ValueError(f"{path}: expected [id2rel, rel2id] that agree, got two maps that differ")
        else:
            raise ValueError(f"{path}: expected [rel2id] or [id2rel, rel2id], got {type(data).__name__} of "
                             f"{len(data) if isinstance(data, list) else 1}")
        return {str(r): int(i) for r, i in rel2id.items()}


def _squad_examples(path: Path, find: bool) -> list[QAExample]:
    with _record(str(path), "SQuAD JSON (data: [{title, paragraphs: [{context, qas: [{id, question, answers}]}]}])"):
        return _squad_records(path, _json(path)["data"], find)


def _squad_records(path: Path, data: list[Any], find: bool) -> list[QAExample]:
    out = []
    for article in data:
        for para in article["paragraphs"]:
            context = para["context"]
            for qa in para["qas"]:
                answers = []
                for a in qa["answers"]:
                    start = context.find(a["text"]) if find else a["answer_start"]
                    if find and start < 0:
                        raise ValueError(f"{path}, question {qa['id']}: expected the answer {a['text']!r} in its "
                                         f"context, got a context without it")
                    _check_offset(f"{path}, question {qa['id']}", context, a["text"], start)
                    answers.append(Answer(a["text"], start))
                out.append(QAExample(qa["id"], article["title"], context, qa["question"], tuple(answers)))
    return out


def load_squad(root: str | Path | None = None) -> list[QAExample]:
    """SQuAD v1.1 dev (``squad_v1.1/dev-v1.1.json``; there is no train set): 10,570 questions on 2,067 paragraphs
    of 48 articles, 34,726 answers (about 3 per question). Split it by article with :func:`split_by_article`."""
    return _squad_examples(_path(_base(root), "squad_v1.1", "dev-v1.1.json"), find=False)


def split_by_article(examples: list[QAExample], n_test: int = 10, seed: int = 0) -> QASplit:
    """``examples`` split by article ``title``: ``n_test`` articles drawn with ``seed`` go to ``test``, the others
    to ``train``, so no paragraph is on both sides (SQuAD dev: 48 articles, e.g. 38 / 10). Order is kept."""
    if not isinstance(examples, list) or not all(isinstance(e, QAExample) for e in examples):
        what = type(examples).__name__ if not isinstance(examples, list) else "a list holding other things"
        raise TypeError(f"expected examples to be a list of QAExample (load_squad gives one), got {what}")
    titles = list(dict.fromkeys(e.title for e in examples))
    if len(titles) < 2:
        raise ValueError(f"expected examples of at least 2 articles, got {len(titles)}")
    n_test = check_int("n_test", n_test, 1, len(titles) - 1)
    check_int("seed", seed, 0)
    picked = {titles[i] for i in np.random.default_rng(seed).choice(len(titles), size=n_test, replace=False)}
    return QASplit([e for e in examples if e.title not in picked], [e for e in examples if e.title in picked])


def load_dureader_robust(root: str | Path | None = None) -> list[QAExample]:
    """DuReader-robust dev (``dureader_robust/dev.json``, SQuAD-style; Chinese): 1,417 questions, 1,962 answers.
    The file's ``answer_start`` is -1 throughout (as the official dev release), so each answer's start is its
    first occurrence in the context (every answer occurs)."""
    return _squad_examples(_path(_base(root), "dureader_robust", "dev.json"), find=True)


def load_duee(root: str | Path | None = None) -> list[EventSentence]:
    """DuEE 1.0 dev (``duee/duee_dev.json``, JSON lines; Chinese): 1,498 sentences, 1,790 events, 3,696 arguments,
    each argument an :class:`Argument` of one piece (``alias``, empty throughout, is not kept)."""
    path = _path(_base(root), "duee", "duee_dev.json")
    out = []
    for lineno, rec in _json_lines(path):
        with _record(f"{path}, line {lineno}", "a DuEE record (text, id, event_list)"):
            out.append(_duee_record(rec, f"{path}, line {lineno}"))
    return out


def _duee_record(rec: dict[str, Any], where: str) -> EventSentence:
    text = rec["text"]
    events = []
    for ev in rec["event_list"]:
        trigger = Argument("trigger", (_check_offset(where, text, ev["trigger"], ev["trigger_start_index"]),),
                           (ev["trigger"],))
        args = tuple(Argument(a["role"], (_check_offset(where, text, a["argument"], a["argument_start_index"]),),
                              (a["argument"],)) for a in ev["arguments"])
        events.append(Event(ev["event_type"], trigger, args))
    return EventSentence(rec["id"], text, tuple(events))


def load_duee_schema(root: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """DuEE's event schema (``duee/duee_event_schema.json``): event type -> its roles, 65 types and 217 (type, role)
    pairs, so the post's BIO tagging has 2 x 217 + 1 = 435 labels."""
    path = _path(_base(root), "duee", "duee_event_schema.json")
    out = {}
    for lineno, rec in _json_lines(path):
        with _record(f"{path}, line {lineno}", "a DuEE schema record (event_type, role_list: [{role}])"):
            out[rec["event_type"]] = tuple(r["role"] for r in rec["role_list"])
    return out


__all__ = ["Answer", "Argument", "Event", "EventSentence", "ExtractionSplit", "QAExample", "QASplit",
           "RelationSentence", "TaggedSentence", "Triple", "WebNLGSplit", "WebNLGVariant", "load_conll2003",
           "load_duee", "load_duee_schema", "load_dureader_robust", "load_phee", "load_squad", "load_webnlg",
           "load_webnlg_relations", "split_by_article"]
