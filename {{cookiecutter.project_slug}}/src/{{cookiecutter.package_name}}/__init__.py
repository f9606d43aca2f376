"""The mail service: `main` builds the app, `cli` holds the commands, `mail` sends."""

SERVICE_NAME = {{ cookiecutter.project_name | tojson }}
"""Shown in the API docs and in the footer of every email."""
