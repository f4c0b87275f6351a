"""Local web UI and generation server (``wavefoundry serve``); imports the public pipelines only."""
