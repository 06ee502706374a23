#!/usr/bin/env python3
"""Write prometheusrule.yaml: the groups of prelabel-rules.yaml wrapped in a PrometheusRule.

prelabel-rules.yaml is the one file edited by hand; this copies its text (comments included) under
``spec:``. tests/test_monitoring.py fails when prometheusrule.yaml is not this script's output.

    python3 k8s/monitoring/sync_prometheusrule.py          # rewrite prometheusrule.yaml
    python3 k8s/monitoring/sync_prometheusrule.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "prelabel-rules.yaml"
TARGET = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from prelabel-rules.yaml by sync_prometheusrule.py: edit that file, then run
#   python3 k8s/monitoring/sync_prometheusrule.py
# The same rule groups for the Prometheus Operator; kube-prometheus-stack selects rules by the
# `release: kube-prometheus-stack` label.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: prelabel
  labels:
    release: kube-prometheus-stack
    app.kubernetes.io/name: prelabel
    app.kubernetes.io/component: monitoring
spec:
"""


def render(source: str) -> str:
    """The PrometheusRule for the text of a rule file: everything from its ``groups:`` line on,
    indented under ``spec:`` (the leading comment block stays in the source only)."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "".join(("  " + line if line.strip() else "") + "\n" for line in lines[start:])
    return HEADER + body


def main(argv: list[str]) -> int:
    text = render(SOURCE.read_text())
    if "--check" in argv:
        if TARGET.read_text() != text:
            print(f"{TARGET.name} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
