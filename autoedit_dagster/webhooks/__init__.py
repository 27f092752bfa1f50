"""Signed completion webhooks: settings, signing, the durable outbox, delivery and event bodies."""
