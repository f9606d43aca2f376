"""`python -m <package> templates check`: render every template in every locale with its `example.json`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from .compose import display_id
from .template_files import TemplateFolderError
from .templates import TemplateRegistry, TemplateRequestError

__all__ = ["SAMPLE_SERVICE", "TemplateReport", "check_templates", "run_check"]

SAMPLE_ID = "0123456789abcdef0123456789abcdef"
SAMPLE_SERVICE = {
    "service_name": "Example Service",
    "notification_id": SAMPLE_ID,
    "notification_ref": display_id(SAMPLE_ID),
    "unsubscribe_url": "https://mail.example.com/unsubscribe/sample-token",
}
"""The service's variables in checks and previews."""


@dataclass
class TemplateReport:
    """What a check found: each template with the locales that rendered, and every problem (one line each)."""

    rendered: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check_templates(folder: Path) -> TemplateReport:
    """Load the templates of `folder` and render each in each locale with its example data."""
    report = TemplateReport()
    try:
        registry = TemplateRegistry(folder)
    except TemplateFolderError as error:
        report.problems.append(str(error))
        return report
    if not registry.templates:
        report.problems.append(f"{folder}: no templates (one folder per template)")
    for name, template in registry.templates.items():
        if template.variables and not template.source.example:
            report.problems.append(
                f"{name}: add {name}/example.json with a value for each of: {template.needs}"
            )
            continue
        for locale in template.locales:
            try:
                rendered = template.render(template.source.example, locale, SAMPLE_SERVICE)
            except TemplateRequestError as error:
                report.problems.append(f"{name} ({locale}): {error}")
                continue
            if not rendered.text.strip() or not rendered.html.strip():
                report.problems.append(f"{name} ({locale}): body.txt or body.html renders empty")
                continue
            report.rendered.setdefault(name, []).append(locale)
    return report


def run_check(folder: Path) -> int:
    """Print what rendered and every problem; 0 when there is none, 1 otherwise."""
    report = check_templates(folder)
    for name, locales in report.rendered.items():
        print(f"ok  {name}: {', '.join(locales)}")
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if report.problems else 0
