"""`mmrec validate`: check a dataset folder end to end and print a data-quality report.

Every check of ``released.load_released`` runs, and the embedding parts are streamed once (width, numbers,
NaN/inf, duplicate sentences, every referenced conversation embedded) -- nothing is written. The report gives
the counts of SPEC 2.1 (PEs, PE types, events and items per PE, purchases per item), the tag/keyword
vocabulary that the protocol would fit, and what the protocol drops (unreferenced sessions and conversations,
tags and keywords under the 0.1 % share threshold); ``prepare`` stores the same summary in its meta.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, iter_embedding_chunks
from mmrec_ray.data.ingest import EmbeddingAccumulator
from mmrec_ray.data.layout import Layout, build_layout, check_conversations_embedded
from mmrec_ray.data.released import TEXT_FILE, ReleasedDataset, load_released
from mmrec_ray.data.tensors import SUBSET_NAMES, subset_labels
from mmrec_ray.data.vocab import VOCAB_THRESHOLD
from mmrec_ray.data.vocabulary_fit import Vocabulary, fit_vocabulary


def _histogram(values: np.ndarray) -> dict[int, int]:
    keys, counts = np.unique(values, return_counts=True)
    return {int(k): int(c) for k, c in zip(keys, counts)}


def describe(
    ds: ReleasedDataset,
    layout: Layout,
    vocab: Vocabulary,
    threshold: float,
    acc: EmbeddingAccumulator | None,
) -> dict:
    """Counts, distributions and protocol drops of a loaded dataset (JSON-serialisable)."""
    subset = subset_labels(layout.has_conversation, layout.has_session)
    pe_types = {name: int((subset == code).sum()) for code, name in SUBSET_NAMES.items()}
    items_per_pe = np.bincount(np.searchsorted(layout.purchase_event_id, ds.purchases.purchase_event_id))
    kind = layout.event_kind
    sessions_in_file = np.unique(ds.sessions.session_id)
    unreferenced_sessions = ~np.isin(ds.sessions.session_id, layout.session_id)
    conversations_in_file = np.unique(ds.keywords.conversation_id)
    unreferenced_sentences = ~np.isin(ds.keywords.conversation_id, layout.conversation_id)
    keyword_counts = np.bincount(
        np.searchsorted(layout.conversation_id, ds.keywords.conversation_id[~unreferenced_sentences]),
        minlength=len(layout.conversation_id),
    )
    counts = {
        "users": int(len(np.unique(ds.users.user_id))),
        "user_rows": int(len(ds.users.user_id)),
        "purchase_events": int(len(layout.purchase_event_id)),
        "purchase_rows": int(len(ds.purchases.item_id)),
        "post_filter_rows": int(len(ds.post_filter.item_id)),
        "items": int(len(np.unique(ds.purchases.item_id))),
        "sessions_in_file": int(len(sessions_in_file)),
        "sessions_referenced": int(len(layout.session_id)),
        "session_events": int((kind == 2).sum()),
        "actions": int(len(ds.sessions.session_id)),
        "conversations_in_file": int(len(conversations_in_file)),
        "conversations_referenced": int(len(layout.conversation_id)),
        "conversation_events": int((kind == 1).sum()),
        "keyword_sentences": int(len(ds.keywords.conversation_id)),
        "distinct_tags": int(len(np.unique(ds.sessions.action_tags.values))),
        "tag_occurrences": int(len(ds.sessions.action_tags.values)),
        "distinct_keywords": int(len(np.unique(ds.keywords.keywords.values))),
        "keyword_occurrences": int(len(ds.keywords.keywords.values)),
        "train_pes": int((~layout.is_test).sum()),
        "test_pes": int(layout.is_test.sum()),
    }
    if ds.text is not None:
        counts["text_sentences"] = int(len(ds.text.conversation_id))
    drops = {
        "sessions_unreferenced": int(len(np.setdiff1d(sessions_in_file, layout.session_id))),
        "actions_of_unreferenced_sessions": int(unreferenced_sessions.sum()),
        "conversations_unreferenced": int(len(np.setdiff1d(conversations_in_file, layout.conversation_id))),
        "keyword_sentences_of_unreferenced_conversations": int(unreferenced_sentences.sum()),
        "tags_under_threshold": int(len(vocab.tags.dropped)),
        "tag_occurrences_under_threshold": int(vocab.tags.dropped_occurrences),
        "keywords_under_threshold": int(len(vocab.keywords.dropped)),
        "keyword_occurrences_under_threshold": int(vocab.keywords.dropped_occurrences),
    }
    warnings = dict(ds.notes)
    embeddings = {"dim": ds.embedding_dim, "parts": len(ds.embedding_parts)}
    if acc is not None:
        counts["embedding_sentences"] = int(acc.sentences)
        drops["embedding_sentences_of_unreferenced_conversations"] = int(acc.unreferenced_sentences)
        drops["embedding_conversations_unreferenced"] = int(len(acc.unreferenced_conversations))
        warnings["conversations_with_different_sentence_counts"] = int((acc.counts != keyword_counts).sum())
        embeddings["dim"] = int(acc.dim)
    elif ds.text is not None:
        embeddings["from_text"] = TEXT_FILE
    return {
        "counts": counts,
        "pe_types": pe_types,
        "events_per_pe": _histogram(layout.n_events),
        "items_per_pe": _histogram(items_per_pe[items_per_pe > 0]),
        "purchases_per_item": _histogram(ds.purchases.item_id),
        "vocabulary": vocab.summary(threshold),
        "drops": drops,
        "warnings": warnings,
        "embeddings": embeddings,
    }


def validate_dataset(
    root: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES, threshold: float = VOCAB_THRESHOLD
) -> dict:
    """Run every check (raises DataError on the first problem) and return the report dict."""
    ds = load_released(root)
    layout = build_layout(ds)
    acc = None
    if ds.embedding_parts:
        acc = EmbeddingAccumulator(layout.conversation_id, ds.embedding_dim)
        for chunk in iter_embedding_chunks(ds.embedding_parts, chunk_bytes, ds.embedding_dim):
            acc.add_chunk(chunk)
        acc.check_unique()
        check_conversations_embedded(ds, layout, acc)
    vocab = fit_vocabulary(ds, layout, threshold)
    report = describe(ds, layout, vocab, threshold, acc)
    report["source"] = str(Path(root).resolve())
    return report


def format_report(report: dict) -> str:
    c, d = report["counts"], report["drops"]
    vocab = report["vocabulary"]
    lines = [f"Dataset: {report.get('source', '')}", "", "Counts"]
    width = max(len(k) for k in c)
    lines += [f"  {k.replace('_', ' '):<{width}}  {v:>12,}" for k, v in c.items()]
    lines += ["", "PE types"]
    total = max(c["purchase_events"], 1)
    lines += [
        f"  {k.replace('_', ' '):<{width}}  {v:>12,}  ({100 * v / total:5.1f} %)"
        for k, v in report["pe_types"].items()
    ]
    for title, key in (
        ("Events per PE", "events_per_pe"),
        ("Items per PE", "items_per_pe"),
        ("Purchases per item", "purchases_per_item"),
    ):
        lines += ["", title, "  " + "  ".join(f"{k}:{v:,}" for k, v in report[key].items())]
    lines += [
        "",
        f"Vocabulary (fitted on training PEs, share threshold {vocab['threshold']:g})",
        f"  tags: {vocab['tags']['kept']} kept of {vocab['tags']['distinct_in_training']} seen in training; "
        f"keywords: {vocab['keywords']['kept']} kept of {vocab['keywords']['distinct_in_training']}",
        f"  shared vocabulary: {vocab['size']} ids ({vocab['shared']} both, {vocab['tags_only']} tags only, "
        f"{vocab['keywords_only']} keywords only)",
    ]
    emb = report["embeddings"]
    if emb.get("from_text"):
        lines += ["", f"Embeddings: none in the folder; `prepare` computes them from {emb['from_text']}"]
    else:
        lines += ["", f"Embeddings: {emb['parts']} part(s), D = {emb['dim']}"]
    lines += ["", "Dropped by the protocol"]
    width = max(len(k) for k in d)
    lines += [f"  {k.replace('_', ' '):<{width}}  {v:>12,}" for k, v in d.items()]
    warnings = {k: v for k, v in report["warnings"].items() if v}
    lines += ["", "Warnings" if warnings else "Warnings: none"]
    lines += [f"  {k.replace('_', ' ')}: {v:,}" for k, v in warnings.items()]
    return "\n".join(lines)
