"""apr_tui: the full-screen Textual app (built in a later issue)."""
