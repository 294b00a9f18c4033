"""One module per tab: `TITLE` and `build(ctx, page)`, thin over `core`."""
