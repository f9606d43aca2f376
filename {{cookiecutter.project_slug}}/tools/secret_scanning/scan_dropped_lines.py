"""Pre-commit hook: scan the lines detect-secrets' file parsers drop, with the configuration of `.secrets.baseline`.

detect-secrets does not scan YAML and INI-like files (anything `configparser` reads, TOML included)
line by line: it scans what its parsers extract, and they drop lines. The YAML parser keeps only
`key: value` pairs, so a compose file's `environment:` list items (`- MAIL_PASSWORD=...`) vanish; the
INI parser loses every value whose `%` interpolation changes it. This hook feeds exactly the dropped
lines, raw, to the same detectors and filters (`# pragma: allowlist secret` included), so nothing
is reported twice. Usage: scan_dropped_lines.py FILE...; exits 1 on a finding and never prints a value.
"""

from __future__ import annotations

import sys
from typing import cast

from detect_secrets.core import baseline

# Line-level scanning of detect-secrets 1.5.0 (pinned in .pre-commit-config.yaml); its public API only
# scans whole files, through the same parsers that drop these lines.
from detect_secrets.core.scan import _is_filtered_out, _process_line_based_plugins
from detect_secrets.transformers import get_transformed_file
from detect_secrets.types import NamedIO

BASELINE = ".secrets.baseline"


def dropped_lines(filename: str) -> list[tuple[int, str]]:
    """Numbered raw lines of `filename`, blanking those its detect-secrets parser keeps; [] if none applies."""
    try:
        with open(filename, encoding="utf-8") as file:
            parsed = get_transformed_file(cast(NamedIO, file))
            file.seek(0)
            raw = file.read().splitlines()
    except UnicodeDecodeError:
        return []  # binary: detect-secrets skips it too
    if not parsed:
        return []  # no parser applies (or it found nothing): detect-secrets scans every raw line itself
    kept = {number for number, line in enumerate(parsed, start=1) if line.strip()}
    return [(number, "" if number in kept else line) for number, line in enumerate(raw, start=1)]


def scan(filename: str) -> list[str]:
    """One `file:line: type` entry per credential on the dropped lines of `filename`."""
    if _is_filtered_out(required_filter_parameters=["filename"], filename=filename):
        return []
    lines = dropped_lines(filename)
    if not any(line for _, line in lines):
        return []
    return [
        f"{filename}:{secret.line_number}: {secret.type}"
        for secret in _process_line_based_plugins(lines=lines, filename=filename)
    ]


def main(filenames: list[str]) -> int:
    """Scan `filenames`; report and return 1 when any holds a credential."""
    baseline.load(baseline.load_from_file(BASELINE), filename=BASELINE)
    findings = [finding for filename in filenames for finding in scan(filename)]
    for finding in findings:
        print(f"Potential secret on a line detect-secrets' parser drops: {finding}")
    if findings:
        print("Move it to the environment or an untracked .env file; if it is a false positive, end its line")
        print("with `# pragma: allowlist secret`.")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
