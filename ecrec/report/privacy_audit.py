"""The membership-inference audit (``privacy_audit.json``) as Markdown and as a report section."""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

ATTACK_LABELS = {  # a paired result (``pairing``) uses the same attacks on mirrored runs
    "loss": "loss threshold",
    "calibrated": "reference-calibrated (loss drop since round {ref})",
}


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _ci(interval: Any, digits: int = 3) -> str:
    if not interval:
        return "n/a"
    return f"{_num(interval[0], digits)}–{_num(interval[1], digits)}"


def _privacy_line(result: dict[str, Any]) -> str:
    if not result.get("dp"):
        return "no DP (train.dp = false)"
    privacy = result.get("privacy") or {}
    if "epsilon" not in privacy:
        return "DP-SGD (ε kept on the merchant's node)"
    sigmas = sorted(set(privacy.get("noise_multipliers") or []))
    sigma = ", ".join(f"{s:.3g}" for s in sigmas) or "n/a"
    return (
        f"DP-SGD, ε = {privacy['epsilon']:.3f} ({privacy['accountant']}, "
        f"δ = {privacy['delta']:g}, per {privacy['unit']}), σ = {sigma}"
    )


def attack_rows(result: dict[str, Any]) -> list[list[str]]:
    """One row per attack: name, AUC [CI], TPR@FPR [CI]."""
    rows = []
    for name, attack in result["attacks"].items():
        label = ATTACK_LABELS.get(name, name).format(ref=result.get("reference_round", 0))
        rows.append(
            [
                label,
                f"{_num(attack['auc'])} ({_ci(attack['auc_ci'])})",
                f"{_num(attack['tpr_at_fpr'])} ({_ci(attack['tpr_at_fpr_ci'])})",
            ]
        )
    return rows


def _sides(result: dict[str, Any]) -> str:
    """Who the attacker tells apart, in words."""
    first = next(iter(result["attacks"].values()))
    pairing = result.get("pairing")
    if pairing:
        rows = pairing["rows"]
        return (
            f"mirrored pair with {pairing['mirror_run']}: each of {result['members']} rows "
            f"({first['member_clusters']} shoppers; {rows['run']} trained here, "
            f"{rows['mirror']} there) scored by the run that trained on it against the run "
            "that held it out"
        )
    return (
        f"members: {result['members']} training rows ({first['member_clusters']} shoppers); "
        f"non-members: {result['non_members']} held-out rows "
        f"({first['non_member_clusters']} shoppers) of the same merchant"
    )


def to_markdown(result: dict[str, Any]) -> str:
    """The audit as Markdown (``privacy_audit.md``)."""
    first = next(iter(result["attacks"].values()))
    fpr = first["fpr"]
    confidence = first["confidence"]
    lines = [
        f"# Membership-inference audit: round {result['round']}, merchant {result['merchant']}",
        "",
        f"- training: {_privacy_line(result)}; rounds the merchant trained: "
        f"{', '.join(map(str, result['merchant_trained_rounds'])) or 'none'}",
        f"- {_sides(result)}",
        f"- mean loss (target: {result['targets']}): members "
        f"{_num(result['mean_loss']['members'], 4)}, non-members "
        f"{_num(result['mean_loss']['non_members'], 4)}",
        f"- {confidence:.0%} intervals: bootstrap over shoppers ({first['n_bootstrap']} "
        "resamples); AUC 0.5 = no better than a coin",
        "",
        f"| attack | AUC ({confidence:.0%} CI) | TPR at FPR ≤ {fpr:g} ({confidence:.0%} CI) |",
        "|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in attack_rows(result)]
    pairing = result.get("pairing")
    if pairing:
        lines += ["", "Each run alone (training rows against the other half's rows):", ""]
        lines += ["| run | attack | AUC | TPR |", "|---|---|---|---|"]
        for side, attacks in pairing["single"].items():
            where = result["run"] if side == "run" else pairing["mirror_run"]
            single = {**result, "attacks": attacks}
            lines += [f"| {where} | {' | '.join(row)} |" for row in attack_rows(single)]
    canaries = result.get("canaries")
    if canaries:
        final, ref = canaries["final"], canaries["reference"]
        lines += [
            "",
            f"Canaries: {final['canaries']} planted, each ranked among {final['references']} "
            f"never-inserted codes; exposure = log2({final['references'] + 1}) − log2(rank), "
            f"at most {final['max_possible']:.2f} bits, "
            f"{final['expected_without_memorisation']:.2f} expected without memorisation.",
            "",
            "| model | mean exposure | max exposure | canaries ranked first |",
            "|---|---|---|---|",
            f"| final (round {result['round']}) | {_num(final['mean_exposure'], 2)} | "
            f"{_num(final['max_exposure'], 2)} | {final['top_ranked']} |",
            f"| reference (round {result['reference_round']}) | {_num(ref['mean_exposure'], 2)} | "
            f"{_num(ref['max_exposure'], 2)} | {ref['top_ranked']} |",
        ]
    return "\n".join(lines) + "\n"


def html_section(run_dir: str | Path) -> str:
    """The report's audit section; empty when the run has no ``privacy_audit.json``."""
    from ecrec.runfolder import RunFolder

    result = RunFolder(run_dir).read_privacy_audit()
    if result is None:
        return ""
    first = next(iter(result["attacks"].values()))
    head = f"<tr><th>attack</th><th>AUC (CI)</th><th>TPR at FPR ≤ {first['fpr']:g} (CI)</th></tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in attack_rows(result)
    )
    parts = [
        "<h2 id='privacy-audit'>Empirical privacy audit (membership inference)</h2>",
        f"<p>Round {result['round']} global ranker, merchant "
        f"{html.escape(str(result['merchant']))}: {html.escape(_privacy_line(result))}. "
        f"{html.escape(_sides(result))}; {first['confidence']:.0%} bootstrap intervals over "
        "shoppers. "
        "AUC 0.5 means the attacker does no better than a coin.</p>",
        f"<table>{head}{body}</table>",
    ]
    canaries = result.get("canaries")
    if canaries:
        final, ref = canaries["final"], canaries["reference"]
        parts.append(
            f"<p>Canaries: {final['canaries']} planted; mean exposure "
            f"{_num(final['mean_exposure'], 2)} bits (max {_num(final['max_exposure'], 2)} of "
            f"{final['max_possible']:.2f} possible; {final['expected_without_memorisation']:.2f}"
            f" expected without memorisation; round-{result['reference_round']} model "
            f"{_num(ref['mean_exposure'], 2)}).</p>"
        )
    return "".join(parts)


__all__ = ["attack_rows", "html_section", "to_markdown"]
