"""Talking to a running AutoEditTATE deployment, and guarding it.

- `gateway`: the JWT + rate-limit reverse proxy in front of dagster-webserver (`autoedit gateway`);
- `tokens`: minting and verifying its tokens (`autoedit token`);
- `metrics`: the Prometheus collector behind the gateway's `/metrics`;
- `logs`: JSON (or text) log lines for the code location and the gateway;
- `commands`: the argparse wiring of `autoedit gateway` and `autoedit token`.

Importing this package imports nothing heavy: `logs` is named from dagster.yaml, so each module
loads its own dependencies.
"""
