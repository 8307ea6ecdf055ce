"""`saefilter report`: one self-contained HTML page (plots inlined as PNG data URIs, no network)
plus the PNG plots as files, from a score file and its dataset.

The page shows the score distribution with the cut-off, the top-N flagged samples with their top
harmful features and the tokens that drive their score highlighted, and the harmful features that
explain the flagged samples.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saefilter.files import atomic_writer, iter_jsonl
from saefilter.inputs.formats import FormatError, to_conversation
from saefilter.inputs.records import Record, read_lines
from saefilter.outputs.score_files import component_id, meta_path_for


@dataclass
class ReportInputs:
    """Every score (one float a row, for the histogram) and the whole rows of the flagged ones only,
    so that a report of millions of rows fits in memory."""

    scores: np.ndarray
    flagged: list[dict[str, Any]]  # rank <= top_n, by rank
    meta: dict[str, Any]
    records: dict[int, Record]  # line -> record, only for the flagged rows


def load_inputs(scores_path: Path, data_path: Path | None, top_n: int) -> ReportInputs:
    scores, flagged = [], []
    for row in iter_jsonl(scores_path):
        scores.append(row["score"])
        if row["rank"] <= top_n:
            flagged.append(row)
    flagged.sort(key=lambda r: r["rank"])
    meta_path = meta_path_for(scores_path)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    data = data_path or (Path(meta["input"]) if "input" in meta else None)
    wanted = {r["line"] for r in flagged}
    records: dict[int, Record] = {}
    if data is not None and data.exists():
        records = {item.line_no: item for item in read_lines(data) if isinstance(item, Record) and item.line_no in wanted}
    return ReportInputs(np.array(scores, dtype=np.float64), flagged, meta, records)


def cutoff_score(scores: np.ndarray, fraction: float | None, threshold: float | None) -> float | None:
    if threshold is not None:
        return threshold
    if fraction is None or len(scores) == 0:
        return None
    k = round(fraction * len(scores))
    return float(np.sort(scores)[::-1][k - 1]) if k > 0 else None


def histogram_png(scores: np.ndarray, cutoff: float | None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.hist(scores, bins=min(60, max(10, len(scores) // 5)), color="#4c72b0", edgecolor="white")
    if cutoff is not None:
        ax.axvline(cutoff, color="#c44e52", linestyle="--", label=f"cut-off {cutoff:.4f}")
        ax.legend(frameon=False)
    ax.set_xlabel("score (activation-weighted proximity to harmful features)")
    ax.set_ylabel("records")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def share_text(feature: dict[str, Any]) -> str:
    """A feature's share of a score, and how far above its benign baseline when the set is calibrated."""
    text = f"{feature['contribution']:.4f}"
    if "above_benign" in feature:
        text += f", +{feature['above_benign']:.4f} above benign"
    return text


def feature_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Harmful features ranked over the given (flagged) rows: by their total contribution above the
    benign baseline when the rows carry it (a calibrated set), else by their total contribution."""
    shown = [feature for row in rows for feature in row["top_features"]]
    calibrated = bool(shown) and all("above_benign" in feature for feature in shown)
    totals: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"contribution": 0.0, **({"above_benign": 0.0} if calibrated else {}), "top_in": 0, "label": ""})
    for row in rows:
        for rank, feature in enumerate(row["top_features"]):
            entry = totals[component_id(feature)]
            entry["contribution"] += feature["contribution"]
            if calibrated:
                entry["above_benign"] += feature["above_benign"]
            entry["top_in"] += rank == 0
            entry["label"] = feature["label"]
    key = "above_benign" if calibrated else "contribution"
    return sorted(({"feature": name, **v} for name, v in totals.items()), key=lambda e: -e[key])


def scored_text(record: Record | None, field: str | None) -> str:
    """What was scored, for display: the assistant turns of a chat, or the text."""
    if record is None:
        return "(record not available: pass --data)"
    try:
        conversation = to_conversation(record.data, field)
    except FormatError as err:
        return f"({err})"
    if not conversation.is_chat:
        return conversation.text or ""
    return "\n\n".join(t.content for t in conversation.turns if t.role == "assistant")


def highlight(text: str, tokens: list[dict[str, Any]]) -> str:
    """Escape text and mark occurrences of the score-driving tokens (stronger = darker)."""
    strongest = max((t["mass"] for t in tokens), default=0.0) or 1.0
    weights = {}
    for token in tokens:
        word = token["token"].strip()
        if len(word) >= 2 or word.isalnum():
            weights[word] = max(weights.get(word, 0.0), token["mass"] / strongest)
    if not weights:
        return html.escape(text)
    alternatives = [rf"(?<!\w){re.escape(w)}(?!\w)" if w.isalnum() else re.escape(w) for w in sorted(weights, key=len, reverse=True)]
    pattern = re.compile("|".join(alternatives))
    parts, last = [], 0
    for match in pattern.finditer(text):
        parts.append(html.escape(text[last : match.start()]))
        alpha = 0.25 + 0.6 * weights[match.group(0)]
        parts.append(f'<mark style="background: rgba(220,60,60,{alpha:.2f})">{html.escape(match.group(0))}</mark>')
        last = match.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.3em}
table{border-collapse:collapse;width:100%;font-size:.9em}th,td{border-bottom:1px solid #eee;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f6f6f6}td:nth-child(4){min-width:14em}.num{text-align:right;font-variant-numeric:tabular-nums}.meta td:first-child{color:#666;width:14em}
pre{white-space:pre-wrap;margin:0;font-size:.92em;max-height:16em;overflow:auto;background:#fafafa;padding:.5em;border-radius:4px}
.warn{background:#fff6e0;padding:.6em;border-radius:4px;font-size:.9em}
"""


def render_html(inputs: ReportInputs, histogram: bytes, cutoff: float | None) -> str:
    scores, flagged, meta = inputs.scores, inputs.flagged, inputs.meta
    above = int((scores >= cutoff).sum()) if cutoff is not None else None
    meta_rows = [
        ("input", meta.get("input", "?")), ("records scored", len(scores)), ("model", meta.get("model", "?")),
        ("SAE", f"{meta.get('sae', '?')} @ {meta.get('hook', '?')}"),
        ("harmful features", f"{meta.get('features', '?')} ({meta.get('n_harmful_features', '?')})"),
        ("scoring", f"tokens={meta.get('tokens')}, aggregation={meta.get('aggregation')}, k={meta.get('neighbours')}"),
        ("score mean / median / max", f"{scores.mean():.4f} / {np.median(scores):.4f} / {scores.max():.4f}" if len(scores) else "-"),
    ]
    if cutoff is not None:
        meta_rows.append(("cut-off", f"{cutoff:.4f}: {above} records at or above"))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>saefilter report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>saefilter report: {html.escape(Path(str(meta.get('input', 'scores'))).name)}</h1>",
        "<table class='meta'>" + "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in meta_rows) + "</table>",
        "<h2>Score distribution</h2>",
        f"<img alt='score histogram' src='data:image/png;base64,{base64.b64encode(histogram).decode()}'>",
        ("<p class='warn'>A high score means the sample's active SAE features point in directions close to harmful "
         "features: fine-tuning on it may amplify them. It is a ranking signal, not a verdict; read the flagged samples.</p>"),
        f"<h2>Top {len(flagged)} flagged samples</h2>",
        "<table><tr><th>rank</th><th>line</th><th class='num'>score</th><th>top harmful features</th><th>scored text (score-driving words marked)</th></tr>",
    ]
    field = meta.get("field")
    for row in flagged:
        features = "<br>".join(
            f"<b>{component_id(f)}</b> {html.escape(f['label'])} <span style='color:#888'>({share_text(f)})</span>"
            for f in row["top_features"][:3]
        )
        # whole words where the row has them (scorer version 2), else its token pieces
        marks = [{"token": w["word"], "mass": w["mass"]} for w in row["top_words"]] if row.get("top_words") \
            else row["top_tokens"]
        text = highlight(scored_text(inputs.records.get(row["line"]), field), marks)
        parts.append(
            f"<tr><td>{row['rank']}</td><td>{row['line']}</td><td class='num'>{row['score']:.4f}</td>"
            f"<td>{features}</td><td><pre>{text}</pre></td></tr>"
        )
    parts.append("</table><h2>Harmful features behind the flagged samples</h2>")
    table = feature_table(flagged)
    calibrated = bool(table) and "above_benign" in table[0]
    extra_head = "<th class='num'>total above benign</th>" if calibrated else ""
    parts.append(f"<table><tr><th>feature</th><th>label</th><th class='num'>total contribution</th>{extra_head}"
                 "<th class='num'>top feature in</th></tr>")
    for entry in table:
        extra = f"<td class='num'>{entry['above_benign']:.4f}</td>" if calibrated else ""
        parts.append(
            f"<tr><td>{entry['feature']}</td><td>{html.escape(entry['label'])}</td>"
            f"<td class='num'>{entry['contribution']:.4f}</td>{extra}<td class='num'>{entry['top_in']}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_report(
    scores_path: Path, output: Path, data_path: Path | None = None, top_n: int = 25,
    fraction: float | None = 0.5, threshold: float | None = None,
) -> tuple[Path, Path, dict[str, Any]]:
    inputs = load_inputs(scores_path, data_path, top_n)
    scores = inputs.scores
    cutoff = cutoff_score(scores, fraction, threshold)
    histogram = histogram_png(scores, cutoff)
    png_path = output.with_suffix(".hist.png")
    with atomic_writer(png_path, "wb") as handle:
        handle.write(histogram)
    with atomic_writer(output) as handle:
        handle.write(render_html(inputs, histogram, cutoff))
    summary = {"records": len(scores), "cutoff": cutoff, "above": int((scores >= cutoff).sum()) if cutoff is not None else None,
               "top_features": feature_table(inputs.flagged)[:5]}
    return output, png_path, summary
