"""One tick of the webhook delivery sensor in a process of its own: a daemon that lives one tick.

`python -m testsupport.webhook_tick` reads AUTOEDIT_STORAGE, the AUTOEDIT_WEBHOOK_* variables and
DAGSTER_HOME like the daemon does, evaluates `webhook_delivery_sensor` once and exits; what it
knows when it starts is only what the store and the instance hold.
"""

import dagster as dg

from autoedit_dagster.definitions import build_definitions
from autoedit_dagster.resources import media_store_from_env
from autoedit_dagster.webhooks.settings import WebhookResource


def main() -> None:
    defs = build_definitions()
    sensor = defs.get_sensor_def("webhook_delivery_sensor")
    with dg.DagsterInstance.get() as instance:
        resources = {"store": media_store_from_env(), "webhooks": WebhookResource.from_env()}
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
        print(result.skip_message)


if __name__ == "__main__":
    main()
