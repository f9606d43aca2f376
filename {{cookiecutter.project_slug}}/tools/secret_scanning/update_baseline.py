"""Regenerate `.secrets.baseline` with this project's detectors and filters (`make secrets-baseline`).

Run from the repository root. The baseline carries the whole detect-secrets configuration, so the
`detect-secrets` hook needs no flags: plugins and filters are stored with repo-relative paths (stock
detect-secrets writes absolute ones, which break on every other checkout). Audit labels of findings
already in the baseline are kept; the file is rewritten only when its content changes.
(`detect-secrets audit` of detect-secrets 1.5.0 cannot load plugins from a file: it caches the plugin
list before reading the baseline. Review findings in `git diff .secrets.baseline` instead.)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from detect_secrets.main import main as detect_secrets_main

BASELINE = Path(".secrets.baseline")

# Stock parts replaced by detectors.py (see docs/secret-scanning.md):
# KeywordDetector -> CredentialAssignmentDetector, BasicAuthDetector -> UrlCredentialsDetector,
# GitHubTokenDetector -> GitHubAccessTokenDetector;
# hex strings without a credential name are digests and ids; an IP address is not a credential.
DISABLED_PLUGINS = (
    "KeywordDetector",
    "BasicAuthDetector",
    "GitHubTokenDetector",
    "HexHighEntropyString",
    "IPPublicDetector",
)
# is_indirect_reference hides every finding on a line such as `client = f("SG.<key>")`;
# is_potential_uuid hides Postmark server tokens.
DISABLED_FILTERS = (
    "detect_secrets.filters.heuristic.is_indirect_reference",
    "detect_secrets.filters.heuristic.is_potential_uuid",
)
FILTERS = ("is_harmless_value", "is_digest")
# Baselines (this one, or one in a vendored project) list hashes under `hashed_secret` keys.
EXCLUDED_FILES = r"(^|/)\.secrets\.baseline$"


def scan_arguments(rules: str) -> list[str]:
    """The `detect-secrets scan` command line for the rules file at repo-relative path `rules`."""
    arguments = ["scan", "--no-verify", "--exclude-files", EXCLUDED_FILES, "--plugin", rules]
    for plugin in DISABLED_PLUGINS:
        arguments += ["--disable-plugin", plugin]
    for path in DISABLED_FILTERS:
        arguments += ["--disable-filter", path]
    for name in FILTERS:
        arguments += ["--filter", f"file://{rules}::{name}"]
    return arguments


def relative_plugin_paths(baseline: dict[str, Any], root: Path) -> dict[str, Any]:
    """The baseline with `file:///abs/...` plugin paths made relative to `root`."""
    for plugin in baseline["plugins_used"]:
        path = plugin.get("path", "")
        if path.startswith("file://") and os.path.isabs(path[len("file://") :]):
            plugin["path"] = "file://" + Path(os.path.relpath(path[len("file://") :], root)).as_posix()
    return baseline


def main() -> int:
    """Scan the tracked files and write the baseline; print what changed."""
    root = Path.cwd().resolve()
    rules = Path(__file__).resolve().with_name("detectors.py").relative_to(root).as_posix()
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        detect_secrets_main(scan_arguments(rules))
    new = relative_plugin_paths(json.loads(output.getvalue()), root)
    old: dict[str, Any] = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    _keep_audit_labels(new, old)
    if {**new, "generated_at": None} == {**old, "generated_at": None}:
        print(f"{BASELINE} is up to date ({_count(new)} known findings).")
        return 0
    BASELINE.write_text(json.dumps(new, indent=2) + "\n")
    print(f"Wrote {BASELINE} ({_count(new)} known findings); review the change with `git diff {BASELINE}`.")
    return 0


def _keep_audit_labels(new: dict[str, Any], old: dict[str, Any]) -> None:
    labels = {
        (filename, item["hashed_secret"], item["type"]): item
        for filename, items in old.get("results", {}).items()
        for item in items
    }
    for filename, items in new["results"].items():
        for item in items:
            previous = labels.get((filename, item["hashed_secret"], item["type"]), {})
            for field in ("is_secret", "is_verified"):
                if field in previous:
                    item[field] = previous[field]


def _count(baseline: dict[str, Any]) -> int:
    return sum(len(items) for items in baseline["results"].values())


if __name__ == "__main__":
    sys.exit(main())
