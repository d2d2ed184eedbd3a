"""Checks of a built manifest that a corpus can pass row by row and still be wrong as a whole.

- duplicates: the same decoded audio (equal `sha256`) in several rows, within a split, across splits
  (a test utterance seen in training), or with conflicting labels (an error unless
  `data.allow_conflicting_duplicates: true`);
- speaker overlap: a speaker in more than one split (the splits are then not speaker-disjoint);
- short clips: shorter than `data.min_seconds_warn` (too short to mean anything to a detector);
- classes: a non-empty train or eval split without both bonafide and spoof (nothing can be learnt or
  measured); a dev split with one class only gives no dev EER (a warning).

`check_manifest` raises DataError for what makes the later stages fail or meaningless and returns the
rest as a dict for metrics/prepare.json (counts, plus a few examples), with one warning line each.
"""
from __future__ import annotations

import sys

import pandas as pd

from antispoof.datasets import LABELS
from antispoof.errors import DataError

EXAMPLES = 10  # names kept per finding in metrics/prepare.json


def _shown(items: list[str], k: int = 5) -> str:
    return ", ".join(items[:k]) + (f", ... ({len(items) - k} more)" if len(items) > k else "")


def duplicates(manifest: pd.DataFrame) -> dict:
    """Groups of rows with equal audio: how many, and how many are within a split / across / conflicting."""
    groups = [g for _, g in manifest.groupby("sha256", sort=True) if len(g) > 1]
    within = sum(int((g["split"].value_counts() > 1).any()) for g in groups)
    across = [g for g in groups if g["split"].nunique() > 1]
    conflicting = [g for g in groups if g["label"].nunique() > 1]
    return {
        "groups": len(groups),
        "rows": int(sum(len(g) for g in groups)),
        "within_split": within,
        "across_splits": len(across),
        "conflicting_labels": len(conflicting),
        "examples": [" = ".join(f"{u} ({s}, {l})" for u, s, l in zip(g["utt_id"], g["split"], g["label"]))
                     for g in (conflicting + across + groups)[:EXAMPLES]],
    }


def speaker_overlap(manifest: pd.DataFrame) -> dict:
    splits_of = manifest.groupby("speaker", sort=True)["split"].unique()
    shared = sorted(s for s, splits in splits_of.items() if len(splits) > 1)
    return {"count": len(shared), "speakers": shared[:EXAMPLES]}


def short_clips(manifest: pd.DataFrame, min_seconds: float) -> dict:
    short = manifest[manifest["duration"] < min_seconds].sort_values(["duration", "utt_id"], kind="stable")
    return {"min_seconds": min_seconds, "count": int(len(short)),
            "shortest": [f"{u} ({d:g} s)" for u, d in zip(short["utt_id"][:EXAMPLES], short["duration"][:EXAMPLES])]}


def check_classes(manifest: pd.DataFrame) -> list[str]:
    """DataError for a non-empty train/eval split lacking a class; warnings (returned) for dev."""
    warnings = []
    for split, need in (("train", True), ("dev", False), ("eval", True)):
        labels = set(manifest.loc[manifest["split"] == split, "label"])
        missing = [lab for lab in LABELS if lab not in labels]
        if not labels or not missing:
            continue
        msg = (f"the {split} split has no {' or '.join(missing)} utterances "
               f"({len(manifest[manifest['split'] == split])} {'/'.join(sorted(labels))} only)")
        if need:
            raise DataError(f"{msg}: {'training' if split == 'train' else 'EER'} needs both classes; "
                            "fix the protocol's labels or splits (or data.split_ratios / data.seed)")
        warnings.append(f"{msg}: no dev EER, so no early stopping signal")
    return warnings


def check_manifest(manifest: pd.DataFrame, data: dict) -> dict:
    """Every check above; raises DataError on fatal ones, warns on stderr and returns the findings."""
    warnings = check_classes(manifest)
    dup = duplicates(manifest)
    if dup["conflicting_labels"] and not data.get("allow_conflicting_duplicates", False):
        raise DataError(f"{dup['conflicting_labels']} group(s) of identical audio (equal sha256) carry both "
                        f"labels: {_shown(dup['examples'], 3)}; fix the labels, or set "
                        "data.allow_conflicting_duplicates: true to keep them")
    if dup["groups"]:
        warnings.append(f"{dup['rows']} rows hold identical audio in {dup['groups']} group(s): "
                        f"{dup['within_split']} within a split, {dup['across_splits']} across splits, "
                        f"{dup['conflicting_labels']} with conflicting labels (e.g. {_shown(dup['examples'], 2)})")
    overlap = speaker_overlap(manifest)
    if overlap["count"]:
        warnings.append(f"{overlap['count']} speaker(s) in more than one split: {_shown(overlap['speakers'])}; "
                        "the splits are not speaker-disjoint (data.resplit: true makes them so)")
    short = short_clips(manifest, float(data.get("min_seconds_warn", 0.0)))
    if short["count"]:
        warnings.append(f"{short['count']} clip(s) shorter than data.min_seconds_warn = {short['min_seconds']:g} s: "
                        f"{_shown(short['shortest'])}")
    for w in warnings:
        print(f"prepare: warning: {w}", file=sys.stderr)
    return {"duplicates": dup, "speaker_overlap": overlap, "short_clips": short}
