"""The amqtt plugin contract as the engine calls it: auth outcomes, ACL actions, validation, events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from amqtt.contexts import Action
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin

from nxg_mqtt.broker.message import IncomingMessage
from nxg_mqtt.broker.server import BrokerContext, NxgBroker
from nxg_mqtt.broker.session import BrokerSession, Principal
from nxg_mqtt.errors import ConnectRefused
from nxg_mqtt.protocol import Role
from nxg_mqtt.settings import Settings
from tests.broker.broker_clients import RawClient, wait_for
from tests.factories import BROKER_SETTINGS
from tests.mqtt_client import Clients


class Recorder(BasePlugin):  # type: ignore[misc]
    """Records every event with the arguments amqtt passes."""

    def __init__(self, context: BrokerContext) -> None:
        super().__init__(context)
        self.events: list[tuple[Any, ...]] = []

    async def on_broker_pre_start(self) -> None:
        self.events.append(("pre_start",))

    async def on_broker_post_start(self) -> None:
        self.events.append(("post_start",))

    async def on_broker_pre_shutdown(self) -> None:
        self.events.append(("pre_shutdown",))

    async def on_broker_post_shutdown(self) -> None:
        self.events.append(("post_shutdown",))

    async def on_broker_client_connected(self, *, client_id: str, client_session: BrokerSession) -> None:
        self.events.append(("connected", client_id))

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: BrokerSession) -> None:
        self.events.append(("disconnected", client_id, client_session.disconnect_reason))

    async def on_broker_client_subscribed(self, *, client_id: str, topic: str, qos: int) -> None:
        self.events.append(("subscribed", client_id, topic, qos))

    async def on_broker_client_unsubscribed(self, *, client_id: str, topic: str) -> None:
        self.events.append(("unsubscribed", client_id, topic))

    async def on_broker_message_received(self, *, client_id: str, message: IncomingMessage) -> None:
        self.events.append(("received", client_id, message.topic, message.data, message.qos))

    async def on_broker_message_broadcast(self, *, client_id: str, message: IncomingMessage) -> None:
        self.events.append(("broadcast", client_id, message.topic))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [event for event in self.events if event[0] == name]


class Auth(BaseAuthPlugin):  # type: ignore[misc]
    """good → True, bad → False, wrong → ConnectRefused(0x04), boom → raises, else no opinion."""

    async def authenticate(self, *, session: BrokerSession) -> bool | None:
        if session.username == "good":
            session.principal = Principal(Role.DEVICE, session.password or "")
            return True
        if session.username == "bad":
            return False
        if session.username == "wrong":
            raise ConnectRefused(ConnectRefused.BAD_CREDENTIALS, "wrong password")
        if session.username == "boom":
            raise RuntimeError("auth plugin bug")
        if session.username == "device":
            session.keep_alive = 1  # as the device keepalive-0 rule would
            return True
        return None


class Acl(BaseTopicPlugin):  # type: ignore[misc]
    """No subscribing to secret/#, no publishing to ro/#, client `blind` receives nothing."""

    def __init__(self, context: BrokerContext) -> None:
        super().__init__(context)
        self.checks: list[tuple[str, str, Action]] = []

    async def topic_filtering(
        self, *, session: BrokerSession | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool | None:
        assert session is not None
        assert topic is not None
        assert action is not None
        self.checks.append((session.client_id, topic, action))
        if action == Action.SUBSCRIBE:
            return not topic.startswith("secret/")
        if action == Action.PUBLISH:
            return not topic.startswith("ro/")
        return session.client_id != "blind"


class Validator(BasePlugin):  # type: ignore[misc]
    async def validate_message(self, *, session: BrokerSession, message: IncomingMessage) -> bool | None:
        return message.data != b"invalid"


class Broken(BasePlugin):  # type: ignore[misc]
    """Every hook raises: the engine must log, count, and carry on."""

    async def on_broker_client_connected(self, **kwargs: Any) -> None:
        raise RuntimeError("connected hook bug")

    async def on_broker_message_received(self, **kwargs: Any) -> None:
        raise RuntimeError("received hook bug")

    async def on_broker_client_subscribed(self, **kwargs: Any) -> None:
        raise RuntimeError("subscribed hook bug")


def factory(cls: type[Any], store: list[Any]) -> Callable[[BrokerContext], Any]:
    def make(context: BrokerContext) -> Any:
        plugin = cls(context)
        store.append(plugin)
        return plugin

    return make


class Plugins:
    def __init__(self) -> None:
        self.made: list[Any] = []

    def get(self, cls: type[Any]) -> Any:
        return next(plugin for plugin in self.made if isinstance(plugin, cls))


@pytest.fixture
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[tuple[NxgBroker, Plugins]]:
    classes: list[type[Any]] = getattr(request, "param", [Recorder, Auth, Acl, Validator])
    plugins = Plugins()
    settings: Settings = replace(BROKER_SETTINGS, allow_anonymous=False)
    async with NxgBroker(settings, [factory(cls, plugins.made) for cls in classes]) as broker:
        yield broker, plugins


async def test_context_given_to_plugins(stack: tuple[NxgBroker, Plugins]) -> None:
    broker, plugins = stack
    context = plugins.get(Recorder).context
    assert isinstance(context, BrokerContext)
    assert context.broker is broker
    assert context.settings is broker.settings
    assert context.config is None
    assert plugins.get(Recorder).events[:2] == [("pre_start",), ("post_start",)]


@pytest.mark.parametrize(
    ("username", "code"),
    [("good", 0), ("bad", 5), ("wrong", 4), ("boom", 5), ("nobody", 5), (None, 5)],
)
async def test_auth_outcomes(stack: tuple[NxgBroker, Plugins], paho: Clients, username: str | None, code: int) -> None:
    broker, _ = stack
    client = paho("who")
    assert await client.connect(broker.mqtt_port, username=username, password="pw") == code


async def test_auth_plugin_sees_session_fields(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, _ = stack
    client = paho("fields")
    await client.connect(broker.mqtt_port, username="good", password="s3cret", keepalive=30)
    session = broker.session("fields")
    assert session is not None
    assert (session.username, session.password, session.keep_alive) == ("good", "s3cret", 30)
    assert session.principal == Principal(Role.DEVICE, "s3cret")  # as the plugin set it
    assert session.role == Role.DEVICE
    assert session.remote_address == "127.0.0.1"
    assert not session.is_anonymous


async def test_acl_subscribe_publish_receive(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, plugins = stack
    sub, blind, pub = paho("sub"), paho("blind"), paho("pub")
    for client in (sub, blind, pub):
        await client.connect(broker.mqtt_port, username="good", password="")
    assert await sub.subscribe("secret/x", 1) == [0x80]
    assert await sub.subscribe("#", 1) == [1]
    assert await blind.subscribe("#", 1) == [1]
    await pub.publish("ro/x", b"denied", 1)  # acknowledged, dropped
    await pub.publish("open/x", b"ok", 1)
    assert [m.payload for m in await sub.wait_messages(1)] == [b"ok"]
    assert await blind.quiet(0.3) == []
    assert [m.payload for m in sub.received] == [b"ok"]
    assert broker.stats["publish_denied"] == 1
    assert broker.stats["subscribe_denied"] == 1
    assert broker.stats["receive_denied"] == 1
    actions = {action for _, _, action in plugins.get(Acl).checks}
    assert actions == {Action.SUBSCRIBE, Action.PUBLISH, Action.RECEIVE}


async def test_receive_all_skips_the_receive_check(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, plugins = stack
    blind, pub = paho("blind"), paho("pub")
    await blind.connect(broker.mqtt_port, username="good", password="")
    session = broker.session("blind")
    assert session is not None
    session.receive_all = True
    await blind.subscribe("t", 0)
    await pub.connect(broker.mqtt_port, username="good", password="")
    await pub.publish("t", b"x", 1)
    assert len(await blind.wait_messages(1)) == 1
    assert not [c for c in plugins.get(Acl).checks if c[2] == Action.RECEIVE]


async def test_retained_delivery_checks_receive(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, _ = stack
    await broker.publish("news/a", b"kept", retain=True)
    blind, sighted = paho("blind"), paho("sighted")
    for client in (blind, sighted):
        await client.connect(broker.mqtt_port, username="good", password="")
        await client.subscribe("news/#", 1)
    assert [m.payload for m in await sighted.wait_messages(1)] == [b"kept"]
    assert await blind.quiet(0.3) == []


async def test_validator_drops_but_acknowledges(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, plugins = stack
    sub, pub = paho("sub"), paho("pub")
    await sub.connect(broker.mqtt_port, username="good", password="")
    await sub.subscribe("v", 1)
    await pub.connect(broker.mqtt_port, username="good", password="")
    await pub.publish("v", b"invalid", 1)
    await pub.publish("v", b"valid", 1)
    assert [m.payload for m in await sub.wait_messages(1)] == [b"valid"]
    assert await sub.quiet(0.2) == sub.received[:1]
    assert broker.stats["publish_invalid"] == 1
    recorder = plugins.get(Recorder)
    assert [e[3] for e in recorder.named("received")] == [b"invalid", b"valid"]  # before the checks
    assert len(recorder.named("broadcast")) == 1  # only what was routed


async def test_event_order_and_disconnect_reasons(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, plugins = stack
    recorder = plugins.get(Recorder)
    a = paho("a")
    await a.connect(broker.mqtt_port, username="good", password="")
    assert await a.subscribe("e/t", 1) == [1]
    assert await wait_for(lambda: bool(recorder.named("subscribed")))
    await a.unsubscribe("e/t")
    await a.disconnect()
    assert await wait_for(lambda: len(recorder.named("disconnected")) == 1)

    first, second = paho("dup"), paho("dup")
    await first.connect(broker.mqtt_port, username="good", password="")
    await second.connect(broker.mqtt_port, username="good", password="")
    assert await broker.kick("dup", "revoked")
    assert not await broker.kick("dup")
    events = [e for e in recorder.events if e[0] in ("connected", "disconnected", "subscribed", "unsubscribed")]
    assert events == [
        ("connected", "a"),
        ("subscribed", "a", "e/t", 1),
        ("unsubscribed", "a", "e/t"),
        ("disconnected", "a", "disconnected"),
        ("connected", "dup"),
        ("disconnected", "dup", "taken over"),
        ("connected", "dup"),
        ("disconnected", "dup", "revoked"),
    ]


async def test_shutdown_and_protocol_error_reasons(paho: Clients) -> None:
    plugins = Plugins()
    async with NxgBroker(BROKER_SETTINGS, [factory(Recorder, plugins.made)]) as broker:
        raw = await RawClient.open(broker.mqtt_port)
        await raw.connect("bad-packets")
        raw.send(b"\x36\x00")
        assert await raw.closed_by_peer(2.0)
        await raw.close()
        stays = paho("stays")
        await stays.connect(broker.mqtt_port)
    recorder = plugins.get(Recorder)
    reasons = [(e[1], e[2]) for e in recorder.named("disconnected")]
    assert reasons == [("bad-packets", "protocol error"), ("stays", "server shutdown")]
    assert recorder.events[-3:] == [("pre_shutdown",), ("disconnected", "stays", "server shutdown"), ("post_shutdown",)]


@pytest.mark.parametrize("stack", [[Broken, Recorder]], indirect=True)
async def test_broken_plugin_does_not_break_the_connection(
    stack: tuple[NxgBroker, Plugins], paho: Clients, caplog: pytest.LogCaptureFixture
) -> None:
    broker, plugins = stack
    client = paho("survivor")
    # no auth plugin among these: anonymous is refused, so this broker allows it explicitly
    broker.settings = replace(broker.settings, allow_anonymous=True)
    assert await client.connect(broker.mqtt_port) == 0
    assert await client.subscribe("s/t", 1) == [1]
    await client.publish("s/t", b"still here", 1)
    assert [m.payload for m in await client.wait_messages(1)] == [b"still here"]
    assert broker.stats["plugin_errors"] == 3
    assert "connected hook bug" in caplog.text
    assert plugins.get(Recorder).named("connected") == [("connected", "survivor")]  # later plugins still run


async def test_server_side_publish_api(paho: Clients) -> None:
    plugins = Plugins()
    async with NxgBroker(BROKER_SETTINGS, [factory(Acl, plugins.made)]) as broker:
        sub, blind = paho("sub"), paho("blind")
        await sub.connect(broker.mqtt_port)
        await sub.subscribe("ro/+", 2)  # server publishes bypass the PUBLISH ACL
        await blind.connect(broker.mqtt_port)
        await blind.subscribe("ro/+", 2)
        assert broker.has_subscription("sub", "ro/cmd")
        assert not broker.has_subscription("sub", "other")
        assert not broker.has_subscription("nobody", "ro/cmd")
        assert await broker.publish("ro/cmd", b"go", qos=1, retain=True) == 1  # blind is refused RECEIVE
        assert await sub.wait_messages(1) == sub.received[:1]
        assert (sub.received[0].qos, sub.received[0].retain) == (1, False)
        assert "ro/cmd" in broker.retained
        await broker.publish("ro/cmd", b"", retain=True)
        assert "ro/cmd" not in broker.retained
        assert broker.connected_count == 2
        with pytest.raises(ValueError, match="invalid topic"):
            await broker.publish("ro/#", b"x")


async def test_will_checked_against_publish_acl(stack: tuple[NxgBroker, Plugins], paho: Clients) -> None:
    broker, _ = stack
    watcher = paho("watcher")
    await watcher.connect(broker.mqtt_port, username="good", password="")
    await watcher.subscribe("#", 0)
    denied, allowed = paho("denied"), paho("allowed")
    await denied.connect(broker.mqtt_port, username="good", password="", will=("ro/will", b"no", 0, False))
    await allowed.connect(broker.mqtt_port, username="good", password="", will=("rw/will", b"yes", 0, False))
    denied.drop()
    allowed.drop()
    await watcher.wait_messages(1)
    assert [m.topic for m in await watcher.quiet(0.3)] == ["rw/will"]


async def test_plugin_may_adjust_keepalive(stack: tuple[NxgBroker, Plugins]) -> None:
    broker, plugins = stack
    raw = await RawClient.open(broker.mqtt_port)
    try:
        assert (await raw.connect("dev", keep_alive=0, username="device", password=b"")).return_code == 0
        assert await raw.closed_by_peer(3.0)
        assert plugins.get(Recorder).named("disconnected") == [("disconnected", "dev", "keepalive timeout")]
    finally:
        await raw.close()


async def test_websocket_client_sees_server_shutdown(paho: Clients) -> None:
    plugins = Plugins()
    async with NxgBroker(replace(BROKER_SETTINGS, ws_port=0), [factory(Recorder, plugins.made)]) as broker:
        assert broker.ws_port is not None
        ws = paho("ws", transport="websockets")
        assert await ws.connect(broker.ws_port) == 0
    assert plugins.get(Recorder).named("disconnected") == [("disconnected", "ws", "server shutdown")]
    assert await wait_for(ws.disconnected.is_set)
