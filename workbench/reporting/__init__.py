"""Reports: the HTML page of a run folder (``report``), its forest plot (``forest``) and the headless-Chromium check
of what a reader sees (``browser_check``)."""
