"""The remote CLI: `autoedit submit | status | fetch | backfill` against a running deployment.

`client` (`AutoEditClient`: GraphQL over httpx, and dagster-graphql's client for launches) with
`status` (what `status` reads per page of videos), `queries` (the GraphQL documents), `records`
(the values they answer with), `errors` (every failure as one line with an exit code) and
`commands` (the argparse wiring and the handlers). Neither Dagster nor the code location is
imported by `status` or `backfill`: they must start in well under a second.
"""
