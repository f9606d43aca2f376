"""The mail service: `main` builds the app, `cli` holds the commands, `mail` sends."""
