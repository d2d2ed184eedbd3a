"""Stage `best`: register the experiment's detector, the replicate with the lowest dev EER.

Replicates differ only by seed; the one to ship is chosen on the dev split (never on eval), ties going
to the lowest replicate index. Its weights are copied to models/best/model.pt, next to a model card
(models/best/card.json, and the same as Markdown in models/best/README.md): the params it was trained
and evaluated with, effective seed, run fingerprint, calibration (score -> LLR), dev and eval metrics,
and every candidate's dev EER. `dvc.yaml` declares models/best as the artifact `detector`, so

    dvc artifacts get <repository> detector

fetches it. Load: see `LOAD_SNIPPET` (torch.load with weights_only=True). Deterministic: no timestamps.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from antispoof.aggregate import read_replicates
from antispoof.cli import run_stage
from antispoof.errors import UserError
from antispoof.repro import atomic_write_bytes, atomic_write_json, atomic_write_text

OUT = Path("models/best")
LOAD_SNIPPET = ('import json, torch; from antispoof.models import build_model; card = json.load(open("best/card.json")); '
                'model = build_model(card["params"]["model"], card["sample_rate"]); '
                'model.load_state_dict(torch.load("best/model.pt", weights_only=True)); model.eval()')
CARD_PARAMS = ("seed", "model", "train", "augment", "evaluate")


def choose(evals: dict[int, dict]) -> int:
    """The replicate with the lowest dev EER; ties go to the lowest index."""
    dev = {r: e["dev"]["eer"] for r, e in evals.items() if e.get("dev", {}).get("eer") is not None}
    if not dev:
        raise UserError("metrics/eval/r<r>.json: no replicate has a dev EER (the dev split is empty): "
                        "the best model is chosen on dev, never on eval")
    return min(dev, key=lambda r: (dev[r], r))


def model_card(r: int, params: dict, evals: dict[int, dict], info: dict) -> dict:
    e = evals[r]
    return {
        "artifact": "detector",
        "replicate": r,
        "selection": "lowest dev EER among replicates (ties: lowest replicate index)",
        "candidates_dev_eer": {f"r{q}": evals[q].get("dev", {}).get("eer") for q in sorted(evals)},
        "effective_seed": info["effective_seed"],
        "run_fingerprint": info["run_fingerprint"],
        "sample_rate": info["sample_rate"],
        "score": "bona fide logit minus spoof logit (higher = more bona fide)",
        "calibration": e.get("calibration"),
        "params": {k: params[k] for k in CARD_PARAMS} | {"data": {k: params["data"][k] for k in ("source", "sample_rate", "seed")}},
        "dev_metrics": e.get("dev"),
        "eval_metrics": {c: m for c, m in e.items() if c not in ("dev", "calibration")},
        "versions": info.get("versions"),
        "load": LOAD_SNIPPET,
    }


def card_markdown(card: dict) -> str:
    dev = card["dev_metrics"] or {}
    lines = [f"# Model card: antispoof detector (replicate {card['replicate']})", "",
             f"- Chosen by: {card['selection']}; dev EER per candidate: "
             + ", ".join(f"{k} {100 * v:.3f} %" if v is not None else f"{k} –" for k, v in card["candidates_dev_eer"].items()),
             f"- Effective seed {card['effective_seed']}, run fingerprint `{card['run_fingerprint']}`",
             f"- Input: mono audio at {card['sample_rate']} Hz; output score: {card['score']}"]
    if card["calibration"]:
        c = card["calibration"]
        lines.append(f"- Calibrated log-likelihood ratio = {c['slope']} × score + ({c['offset']}) (fitted on dev)")
    lines += ["", "| split / condition | EER (%) | minDCF | actDCF | Cllr (bits) | actDCF cal. | Cllr cal. (bits) | minCllr (bits) |",
              "|---|---|---|---|---|---|---|---|"]
    rows = [("dev (clean)", dev)] + [(c, m) for c, m in card["eval_metrics"].items() if "eer" in m]
    for name, m in rows:
        f = lambda k, s=1, d=5: "–" if m.get(k) is None else f"{s * m[k]:.{d}f}"  # noqa: E731
        lines.append(f"| {name} | {f('eer', 100, 3)} | {f('min_dcf')} | {f('act_dcf')} | {f('cllr')} | "
                     f"{f('act_dcf_cal')} | {f('cllr_cal')} | {f('min_cllr')} |")
    lines += ["", "Params: `card.json` (`params`). Load (weights only, no pickle code):", "", "```python",
              card["load"].replace("; ", "\n"), "```", ""]
    return "\n".join(lines)


def body(args: argparse.Namespace, params: dict) -> None:
    evals, _ = read_replicates(params["replicates"])
    r = choose(evals)
    source = Path(f"models/r{r}")
    info = json.loads((source / "model.json").read_text())
    card = model_card(r, params, evals, info)
    atomic_write_bytes(OUT / "model.pt", (source / "model.pt").read_bytes())
    atomic_write_json(OUT / "card.json", card)
    atomic_write_text(OUT / "README.md", card_markdown(card))
    print(f"best: replicate {r} (dev EER {100 * evals[r]['dev']['eer']:.3f} %) -> {OUT}/")


def main(argv: list[str] | None = None) -> int:
    return run_stage("best", __doc__, body, argv=argv)


if __name__ == "__main__":
    raise SystemExit(main())
