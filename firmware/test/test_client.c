/* Unit tests of nxg_client: the state machine's transitions, dispatch and acks, backoff bounds. */
#include "fakes.h"
#include "nxg_messages.h"

static fake_t fake;
static nxg_client_t client;
static int turn1_calls;

static void on_turn1(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)user;
    turn1_calls++;
    reply->result = cJSON_CreateObject();
    cJSON_AddStringToObject(reply->result, "turn1", strcmp(cmd->action, "open") == 0 ? "open" : "closed");
}

static void on_led(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)user;
    if (cJSON_GetObjectItem(cmd->params, "fail") != NULL) {
        reply->error = "led is broken";
    }
}

static const char *const TURN1[] = {"open", "close", NULL};
static const char *const LED[] = {"on", "off", NULL};

static int setup(nxg_wire_t wire, const char *stored_token)
{
    memset(&fake, 0, sizeof(fake));
    turn1_calls = 0;
    fake.wire = wire;
    if (stored_token != NULL) {
        snprintf(fake.serial, sizeof(fake.serial), "S1");
        snprintf(fake.token, sizeof(fake.token), "%s", stored_token);
    }
    nxg_config_t config = fake_config(&fake, NULL, "ABCD-EFGH");
    assert_int_equal(nxg_client_init(&client, &config), NXG_OK);
    assert_int_equal(nxg_client_on_command(&client, "turn1", TURN1, "door", on_turn1), NXG_OK);
    assert_int_equal(nxg_client_on_command(&client, "led", LED, NULL, on_led), NXG_OK);
    return 0;
}

static void deliver(const char *topic, const char *text)
{
    nxg_client_on_transport_message(&client, topic, text, strlen(text));
}

/* MQTT first boot: pair session, pair_ok, then the device session. */
static void pair_over_mqtt(void)
{
    nxg_client_tick(&client, 1000);
    assert_int_equal(client.state, NXG_STATE_PAIR_CONNECTING);
    assert_string_equal(fake.client_id, "pair-test");
    assert_string_equal(fake.username, "pair");
    assert_string_equal(fake.password, "ABCD-EFGH");
    nxg_client_on_transport_up(&client);
    assert_int_equal(client.state, NXG_STATE_PAIRING);
    assert_string_equal(fake.subscribed[0], "nxg/pair/pair-test");
    assert_string_equal(fake.topics[0], "nxg/pair/pair-test/req");
    assert_string_equal(fake.payloads[0], "{\"t\":\"pair\",\"code\":\"ABCD-EFGH\"}");
    deliver("nxg/pair/pair-test", "{\"t\":\"pair_ok\",\"serial\":\"S1\",\"token\":\"nxgt_one\",\"server_ts\":1}");
    assert_int_equal(fake.saves, 1);
    assert_string_equal(fake.serial, "S1");
    assert_string_equal(fake.token, "nxgt_one");
    assert_int_equal(logged(&fake, "paired serial=S1"), 1);
    assert_int_equal(fake.disconnects, 1);
    assert_int_equal(client.state, NXG_STATE_BACKOFF);
}

static void connect_as_device(uint64_t now)
{
    nxg_client_tick(&client, now);
    assert_int_equal(client.state, NXG_STATE_AUTH_CONNECTING);
    assert_string_equal(fake.client_id, "S1");
    assert_string_equal(fake.username, "S1");
    nxg_client_on_transport_up(&client);
    assert_int_equal(client.state, NXG_STATE_ONLINE);
}

static void test_mqtt_first_boot_pairs_then_connects(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, NULL);
    pair_over_mqtt();
    connect_as_device(1000); /* at once: no backoff after pairing */
    assert_string_equal(fake.password, "nxgt_one");
    assert_string_equal(fake.subscribed[fake.n_subscribed - 1], "nxg/S1/cmd");
    assert_string_equal(fake.topics[fake.n_published - 1], "nxg/S1/manifest");
    assert_non_null(strstr(last_payload(&fake), "\"action\":\"open\",\"targets\":[\"turn1\"]"));
    assert_int_equal(logged(&fake, "connected"), 1);
}

static void test_mqtt_stored_token_skips_pairing(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, "nxgt_stored");
    connect_as_device(0);
    assert_string_equal(fake.password, "nxgt_stored");
    assert_int_equal(logged(&fake, "paired"), 0);
}

static void test_mqtt_connack_5_erases_and_pairs_again_at_once(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, "nxgt_stale");
    nxg_client_tick(&client, 0);
    nxg_client_on_transport_refused(&client, 5);
    assert_int_equal(fake.erases, 1);
    assert_string_equal(fake.token, "");
    assert_int_equal(logged(&fake, "auth_reset_required: re-pairing"), 1);
    nxg_client_tick(&client, 0);
    assert_int_equal(client.state, NXG_STATE_PAIR_CONNECTING);
    assert_string_equal(fake.username, "pair");
}

static void test_token_refused_right_after_pairing_backs_off(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, NULL);
    pair_over_mqtt();
    nxg_client_tick(&client, 1000);
    nxg_client_on_transport_refused(&client, 5); /* a fresh token refused: no tight pair loop */
    nxg_client_tick(&client, 1000);
    assert_int_equal(client.state, NXG_STATE_BACKOFF);
    assert_true(client.deadline_ms >= 1000 + NXG_BACKOFF_MIN_MS / 2);
}

static void test_wrong_code_backs_off_longer_each_time(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, NULL);
    fake.random = UINT32_MAX;
    uint64_t now = 0, previous_wait = 0;
    for (int attempt = 1; attempt <= 12; attempt++) {
        nxg_client_tick(&client, now);
        assert_int_equal(client.state, NXG_STATE_PAIR_CONNECTING);
        assert_int_equal(fake.connects, attempt);
        nxg_client_on_transport_refused(&client, attempt % 2 ? 4 : 3);
        assert_int_equal(client.state, NXG_STATE_BACKOFF);
        uint64_t wait = client.deadline_ms - now;
        assert_true(wait >= previous_wait && wait >= NXG_BACKOFF_MIN_MS / 2 && wait <= NXG_BACKOFF_MAX_MS);
        nxg_client_tick(&client, client.deadline_ms - 1); /* not a millisecond early */
        assert_int_equal(fake.connects, attempt);
        previous_wait = wait;
        now = client.deadline_ms;
    }
    assert_int_equal(previous_wait, NXG_BACKOFF_MAX_MS); /* capped */
    assert_int_equal(client.stats.refused_codes, 12);
    assert_int_equal(logged(&fake, "pair refused: wrong connection code"), 6);
}

static void test_stable_connection_resets_the_backoff(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, "nxgt_ok");
    for (int i = 0; i < 5; i++) { /* five failures: the next wait would be long */
        nxg_client_tick(&client, client.deadline_ms);
        nxg_client_on_transport_down(&client);
    }
    assert_int_equal(client.failures, 5);
    connect_as_device(client.deadline_ms);
    uint64_t online = client.now_ms;
    nxg_client_tick(&client, online + NXG_STABLE_MS);
    nxg_client_on_transport_down(&client);
    assert_int_equal(client.failures, 1);
    assert_true(client.deadline_ms - client.now_ms <= NXG_BACKOFF_MIN_MS);
}

static void test_no_answer_times_out(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, NULL);
    nxg_client_tick(&client, 0);
    nxg_client_on_transport_up(&client);
    nxg_client_tick(&client, NXG_PAIR_TIMEOUT_MS - 1);
    assert_int_equal(client.state, NXG_STATE_PAIRING);
    nxg_client_tick(&client, NXG_PAIR_TIMEOUT_MS);
    assert_int_equal(client.state, NXG_STATE_BACKOFF);
    assert_int_equal(fake.disconnects, 1);
}

static void test_commands_are_dispatched_and_acked(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, "nxgt_ok");
    connect_as_device(0);
    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"id\":\"c1\",\"target\":\"turn1\",\"action\":\"open\",\"params\":{}}");
    assert_int_equal(turn1_calls, 1);
    assert_string_equal(fake.topics[fake.n_published - 1], "nxg/S1/ack");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c1\",\"ok\":true,\"result\":{\"turn1\":\"open\"}}");
    assert_int_equal(logged(&fake, "cmd id=c1 action=open ok"), 1);

    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"id\":\"c2\",\"target\":\"turn1\",\"action\":\"explode\"}");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c2\",\"ok\":false,\"error\":\"unknown action\"}");
    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"id\":\"c3\",\"target\":\"oven\",\"action\":\"on\"}");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c3\",\"ok\":false,\"error\":\"unknown target\"}");
    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"id\":\"c4\",\"target\":\"led\",\"action\":\"on\",\"params\":{\"fail\":1}}");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c4\",\"ok\":false,\"error\":\"led is broken\"}");
    assert_int_equal(turn1_calls, 1);

    /* malformed from the server: dropped and counted, no ack, still online */
    int published = fake.n_published;
    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"target\":\"turn1\",\"action\":\"open\"}");
    deliver("nxg/S1/cmd", "{\"t\":\"cmd\",\"id\":\"c5\",\"action\":\"open\",\"params\":\"x\"}");
    deliver("nxg/S1/cmd", "\xff\xfe garbage");
    nxg_client_on_transport_message(&client, "nxg/S1/cmd", NULL, 0);
    assert_int_equal(fake.n_published, published);
    assert_int_equal(client.stats.rx_errors, 4);
    assert_int_equal(client.state, NXG_STATE_ONLINE);
    /* a cmd on another topic is not ours to run */
    deliver("nxg/S2/cmd", "{\"t\":\"cmd\",\"id\":\"c6\",\"target\":\"turn1\",\"action\":\"open\"}");
    assert_int_equal(turn1_calls, 1);
}

static void test_send_needs_a_connection(void **state)
{
    (void)state;
    setup(NXG_WIRE_MQTT, "nxgt_ok");
    cJSON *reading = cJSON_CreateObject();
    cJSON_AddNumberToObject(reading, "temp", 20);
    assert_int_equal(nxg_client_send(&client, NXG_CHANNEL_TELEMETRY, reading), NXG_ERR_STATE);
    connect_as_device(0);
    assert_int_equal(nxg_client_send(&client, NXG_CHANNEL_TELEMETRY, reading), NXG_OK);
    assert_string_equal(fake.topics[fake.n_published - 1], "nxg/S1/telemetry");
    assert_string_equal(last_payload(&fake), "{\"temp\":20}");
    cJSON_Delete(reading);
    nxg_client_stop(&client);
    assert_int_equal(client.state, NXG_STATE_STOPPED);
    nxg_client_on_transport_down(&client); /* late event after stop: ignored */
    nxg_client_tick(&client, 1000000);
    assert_int_equal(client.state, NXG_STATE_STOPPED);
}

static void test_gateway_pairs_in_band_and_answers_ping(void **state)
{
    (void)state;
    setup(NXG_WIRE_GATEWAY, NULL);
    nxg_client_tick(&client, 0);
    assert_string_equal(fake.username, ""); /* credentials travel in band */
    nxg_client_on_transport_up(&client);
    assert_string_equal(last_payload(&fake), "{\"t\":\"pair\",\"code\":\"ABCD-EFGH\"}");
    deliver(NULL, "{\"t\":\"pair_ok\",\"serial\":\"S1\",\"token\":\"nxgt_ws\"}");
    assert_int_equal(client.state, NXG_STATE_ONLINE); /* pair_ok authenticates the socket */
    assert_int_equal(fake.disconnects, 0);
    deliver(NULL, "{\"t\":\"ping\"}");
    assert_string_equal(last_payload(&fake), "{\"t\":\"pong\"}");
    cJSON *status = cJSON_CreateObject();
    cJSON_AddStringToObject(status, "turn1", "open");
    assert_int_equal(nxg_client_send(&client, NXG_CHANNEL_STATUS, status), NXG_OK);
    assert_string_equal(last_payload(&fake), "{\"t\":\"status\",\"turn1\":\"open\"}");
    cJSON_Delete(status);
    deliver(NULL, "{\"t\":\"cmd\",\"id\":\"g1\",\"target\":\"turn1\",\"action\":\"close\"}");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"g1\",\"ok\":true,\"result\":{\"turn1\":\"closed\"}}");
}

static void test_gateway_auth_and_reset(void **state)
{
    (void)state;
    setup(NXG_WIRE_GATEWAY, "nxgt_ws");
    nxg_client_tick(&client, 0);
    nxg_client_on_transport_up(&client);
    assert_int_equal(client.state, NXG_STATE_AUTHENTICATING);
    assert_string_equal(last_payload(&fake), "{\"t\":\"auth\",\"token\":\"nxgt_ws\"}");
    deliver(NULL, "{\"t\":\"auth_ok\",\"serial\":\"S1\"}");
    assert_int_equal(client.state, NXG_STATE_ONLINE);
    deliver(NULL, "{\"t\":\"auth_reset_required\"}");
    assert_int_equal(fake.erases, 1);
    assert_int_equal(logged(&fake, "auth_reset_required: re-pairing"), 1);
    nxg_client_tick(&client, 0);
    assert_int_equal(client.state, NXG_STATE_PAIR_CONNECTING);
    nxg_client_on_transport_up(&client);
    deliver(NULL, "{\"t\":\"pair_error\",\"error\":\"unknown connection code\"}");
    assert_int_equal(client.state, NXG_STATE_BACKOFF);
    assert_int_equal(logged(&fake, "pair refused: unknown connection code"), 1);
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    uint32_t previous_ceiling = 0;
    for (uint32_t failures = 0; failures < 100; failures++) {
        uint32_t low = nxg_backoff_ms(failures, 0);
        uint32_t high = nxg_backoff_ms(failures, UINT32_MAX);
        assert_true(low >= NXG_BACKOFF_MIN_MS / 2);
        assert_true(high <= NXG_BACKOFF_MAX_MS);
        assert_true(low <= high && high <= 2 * low + 1);
        assert_true(high >= previous_ceiling);
        previous_ceiling = high;
        for (uint32_t r = 1; r < 1000000; r = r * 7 + 3) {
            uint32_t wait = nxg_backoff_ms(failures, r);
            assert_true(wait >= low && wait <= high);
        }
    }
    assert_int_equal(nxg_backoff_ms(UINT32_MAX, UINT32_MAX) <= NXG_BACKOFF_MAX_MS, 1);
}

static void test_init_refuses_bad_config(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    nxg_config_t config = fake_config(&fake, "bad", NULL);
    config.transport.subscribe = NULL; /* MQTT needs it */
    assert_int_equal(nxg_client_init(&client, &config), NXG_ERR_ARG);
    config = fake_config(&fake, "", NULL);
    assert_int_equal(nxg_client_init(&client, &config), NXG_ERR_ARG);
    config = fake_config(&fake, NULL, NULL); /* no token, no code: nothing to do */
    assert_int_equal(nxg_client_init(&client, &config), NXG_OK);
    nxg_client_tick(&client, 0);
    assert_int_equal(client.state, NXG_STATE_STOPPED);
    /* a token stored for another serial is not used */
    snprintf(fake.serial, sizeof(fake.serial), "OTHER");
    snprintf(fake.token, sizeof(fake.token), "nxgt_other");
    config = fake_config(&fake, "S1", "CODE");
    assert_int_equal(nxg_client_init(&client, &config), NXG_OK);
    assert_false(client.have_token);
    for (int i = 0; i < NXG_MAX_HANDLERS - 0; i++) {
        assert_int_equal(nxg_client_on_command(&client, "t", TURN1, NULL, on_turn1), NXG_OK);
    }
    assert_int_equal(nxg_client_on_command(&client, "t", TURN1, NULL, on_turn1), NXG_ERR_FULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mqtt_first_boot_pairs_then_connects),
        cmocka_unit_test(test_mqtt_stored_token_skips_pairing),
        cmocka_unit_test(test_mqtt_connack_5_erases_and_pairs_again_at_once),
        cmocka_unit_test(test_token_refused_right_after_pairing_backs_off),
        cmocka_unit_test(test_wrong_code_backs_off_longer_each_time),
        cmocka_unit_test(test_stable_connection_resets_the_backoff),
        cmocka_unit_test(test_no_answer_times_out),
        cmocka_unit_test(test_commands_are_dispatched_and_acked),
        cmocka_unit_test(test_send_needs_a_connection),
        cmocka_unit_test(test_gateway_pairs_in_band_and_answers_ping),
        cmocka_unit_test(test_gateway_auth_and_reset),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_init_refuses_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
