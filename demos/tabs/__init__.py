"""One module per tab: `TITLE` and `build(ctx, demo, session)`, thin over `core`."""
