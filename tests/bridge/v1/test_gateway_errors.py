"""A broker that is gone is the gateway failing us: PROTOCOL §6's 502 `GATEWAY_ERROR`, never a 500
or a 503 of our own. Here a REST action that publishes through the bridge's MQTT link; the command
path's 502 is in tests/bridge/test_v1_commands.py, `/ws/gateway`'s `not delivered` answer in
tests/bridge/test_ws_gateway.py."""

from __future__ import annotations

from nxg_mqtt.errors import GatewayError, GatewayTimeout, NxgError
from tests.bridge.helpers import Stack
from tests.bridge.v1.helpers import error_of, invoke
from tests.bridge.v1.test_actions import EVENT


async def test_publishing_with_the_broker_gone_is_502_gateway_error(stack: Stack) -> None:
    await stack.create_device("gw-d")
    await stack.stop_broker()
    refused = await invoke(stack, "devices_PublishEvents", {"deviceId": "gw-d", "events": [EVENT]})
    error_of(refused, 502, "GATEWAY_ERROR")


def test_gateway_errors_sit_in_the_rooted_tree() -> None:
    # the surfaces map by class and code: a proxy timeout is a gateway error with its own status
    assert issubclass(GatewayTimeout, GatewayError) and issubclass(GatewayError, NxgError)
    assert (GatewayError.status, GatewayError.code) == (502, "GATEWAY_ERROR")
    assert (GatewayTimeout.status, GatewayTimeout.code) == (504, "GATEWAY_TIMEOUT")
