/* Unit tests of nxg_messages: every message, and malformed input from the server. */
#include "fakes.h"
#include "nxg_messages.h"

static nxg_msg_t decode_ok(const char *text)
{
    nxg_msg_t msg;
    assert_int_equal(nxg_msg_decode(text, strlen(text), &msg), NXG_OK);
    return msg;
}

static void decode_fails(const char *text, nxg_err_t expected)
{
    nxg_msg_t msg;
    assert_int_equal(nxg_msg_decode(text, strlen(text), &msg), expected);
    assert_null(msg.root); /* nothing left to free */
    nxg_msg_free(&msg);    /* and freeing again is harmless */
}

static void test_decode_pair_ok(void **state)
{
    (void)state;
    nxg_msg_t msg = decode_ok("{\"t\":\"pair_ok\",\"serial\":\"S1\",\"token\":\"nxgt_abc\",\"server_ts\":1}");
    assert_int_equal(msg.kind, NXG_MSG_PAIR_OK);
    assert_string_equal(msg.serial, "S1");
    assert_string_equal(msg.token, "nxgt_abc");
    nxg_msg_free(&msg);
}

static void test_decode_server_messages(void **state)
{
    (void)state;
    nxg_msg_t msg = decode_ok("{\"t\":\"pair_error\",\"error\":\"wrong code\"}");
    assert_int_equal(msg.kind, NXG_MSG_PAIR_ERROR);
    assert_string_equal(msg.error, "wrong code");
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"pair_error\"}");
    assert_string_equal(msg.error, "pair_error");
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"auth_ok\",\"serial\":\"S1\"}");
    assert_int_equal(msg.kind, NXG_MSG_AUTH_OK);
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"auth_reset_required\"}");
    assert_int_equal(msg.kind, NXG_MSG_AUTH_RESET);
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"ping\"}");
    assert_int_equal(msg.kind, NXG_MSG_PING);
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"error\",\"error\":\"bad\"}");
    assert_int_equal(msg.kind, NXG_MSG_ERROR);
    assert_string_equal(msg.error, "bad");
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"something_new\",\"x\":1}");
    assert_int_equal(msg.kind, NXG_MSG_UNKNOWN);
    nxg_msg_free(&msg);
}

static void test_decode_cmd(void **state)
{
    (void)state;
    nxg_msg_t msg = decode_ok(
        "{\"t\":\"cmd\",\"id\":\"c1\",\"target\":\"turn1\",\"action\":\"open\",\"params\":{\"s\":2},\"server_ts\":5}");
    assert_int_equal(msg.kind, NXG_MSG_CMD);
    assert_string_equal(msg.cmd.id, "c1");
    assert_string_equal(msg.cmd.target, "turn1");
    assert_string_equal(msg.cmd.action, "open");
    assert_int_equal(cJSON_GetObjectItem(msg.cmd.params, "s")->valueint, 2);
    nxg_msg_free(&msg);
    /* no target, no params: "" and {} */
    msg = decode_ok("{\"t\":\"cmd\",\"id\":\"c2\",\"action\":\"reboot\"}");
    assert_string_equal(msg.cmd.target, "");
    assert_true(cJSON_IsObject(msg.cmd.params));
    assert_null(msg.cmd.params->child);
    nxg_msg_free(&msg);
    msg = decode_ok("{\"t\":\"cmd\",\"id\":\"c3\",\"action\":\"x\",\"target\":null,\"params\":null}");
    assert_string_equal(msg.cmd.target, "");
    nxg_msg_free(&msg);
}

static void test_decode_malformed(void **state)
{
    (void)state;
    decode_fails("", NXG_ERR_JSON);
    decode_fails("not json", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\"", NXG_ERR_JSON); /* truncated */
    decode_fails("[1,2]", NXG_ERR_JSON);
    decode_fails("\"pair_ok\"", NXG_ERR_JSON);
    decode_fails("{}", NXG_ERR_JSON);
    decode_fails("{\"t\":5}", NXG_ERR_JSON);
    decode_fails("{\"t\":null}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"pair_ok\",\"serial\":\"S\"}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"pair_ok\",\"serial\":\"S\",\"token\":7}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"pair_ok\",\"serial\":\"\",\"token\":\"x\"}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"action\":\"open\"}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"id\":\"\",\"action\":\"open\"}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"id\":\"c\"}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"id\":\"c\",\"action\":\"a\",\"params\":[1]}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"id\":\"c\",\"action\":\"a\",\"target\":3}", NXG_ERR_JSON);
    decode_fails("{\"t\":\"cmd\",\"id\":7,\"action\":\"a\"}", NXG_ERR_JSON);

    char big[NXG_MAX_MESSAGE_BYTES + 64];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    decode_fails(big, NXG_ERR_TOO_LARGE);
    char token[NXG_MAX_TOKEN_BYTES + 64];
    memset(token, 'a', NXG_MAX_TOKEN_BYTES + 1);
    token[NXG_MAX_TOKEN_BYTES + 1] = '\0';
    char text[NXG_MAX_MESSAGE_BYTES];
    snprintf(text, sizeof(text), "{\"t\":\"pair_ok\",\"serial\":\"S\",\"token\":\"%s\"}", token);
    decode_fails(text, NXG_ERR_TOO_LARGE);
    /* embedded NUL and length shorter than the text */
    nxg_msg_t msg;
    assert_int_equal(nxg_msg_decode("{\"t\":\"ping\"}", 5, &msg), NXG_ERR_JSON);
    assert_int_equal(nxg_msg_decode(NULL, 0, &msg), NXG_ERR_ARG);
    assert_int_equal(nxg_msg_decode("{}", 2, NULL), NXG_ERR_ARG);
}

static void test_encode_session_messages(void **state)
{
    (void)state;
    char buf[128];
    int n = nxg_msg_encode_pair(buf, sizeof(buf), "ABCD-EFGH");
    assert_int_equal(n, (int)strlen(buf));
    assert_string_equal(buf, "{\"t\":\"pair\",\"code\":\"ABCD-EFGH\"}");
    assert_true(nxg_msg_encode_auth(buf, sizeof(buf), "nxgt_x\"y") > 0);
    assert_string_equal(buf, "{\"t\":\"auth\",\"token\":\"nxgt_x\\\"y\"}"); /* escaped */
    assert_true(nxg_msg_encode_pong(buf, sizeof(buf)) > 0);
    assert_string_equal(buf, "{\"t\":\"pong\"}");
    assert_int_equal(nxg_msg_encode_pair(buf, 12, "ABCD-EFGH"), NXG_ERR_TOO_LARGE);
    assert_int_equal(nxg_msg_encode_pair(buf, sizeof(buf), NULL), NXG_ERR_ARG);
}

static void test_encode_ack(void **state)
{
    (void)state;
    char buf[256];
    assert_true(nxg_msg_encode_ack(buf, sizeof(buf), "c1", NULL, NULL) > 0);
    assert_string_equal(buf, "{\"t\":\"ack\",\"id\":\"c1\",\"ok\":true}");
    assert_true(nxg_msg_encode_ack(buf, sizeof(buf), "c2", "unknown action", NULL) > 0);
    assert_string_equal(buf, "{\"t\":\"ack\",\"id\":\"c2\",\"ok\":false,\"error\":\"unknown action\"}");
    cJSON *result = cJSON_CreateObject();
    cJSON_AddStringToObject(result, "turn1", "open");
    assert_true(nxg_msg_encode_ack(buf, sizeof(buf), "c3", NULL, result) > 0);
    assert_string_equal(buf, "{\"t\":\"ack\",\"id\":\"c3\",\"ok\":true,\"result\":{\"turn1\":\"open\"}}");
    assert_non_null(cJSON_GetObjectItem(result, "turn1")); /* still the caller's */
    cJSON_Delete(result);
    cJSON *array = cJSON_CreateArray();
    assert_int_equal(nxg_msg_encode_ack(buf, sizeof(buf), "c4", NULL, array), NXG_ERR_ARG);
    cJSON_Delete(array);
}

static void test_encode_data_on_each_wire(void **state)
{
    (void)state;
    char buf[128];
    cJSON *reading = cJSON_CreateObject();
    cJSON_AddNumberToObject(reading, "temp", 22.5);
    cJSON_AddNumberToObject(reading, "uptime_s", 3);
    int n = nxg_msg_encode_data(buf, sizeof(buf), NXG_WIRE_MQTT, NXG_CHANNEL_TELEMETRY, reading);
    assert_string_equal(buf, "{\"temp\":22.5,\"uptime_s\":3}");
    assert_int_equal(n, (int)strlen(buf));
    n = nxg_msg_encode_data(buf, sizeof(buf), NXG_WIRE_GATEWAY, NXG_CHANNEL_TELEMETRY, reading);
    assert_string_equal(buf, "{\"t\":\"telemetry\",\"temp\":22.5,\"uptime_s\":3}");
    assert_int_equal(n, (int)strlen(buf));
    /* too small a buffer: an error, never a cut message */
    for (size_t len = 0; len < strlen("{\"t\":\"telemetry\",\"temp\":22.5,\"uptime_s\":3}") + 5; len++) {
        assert_int_equal(nxg_msg_encode_data(buf, len, NXG_WIRE_GATEWAY, NXG_CHANNEL_TELEMETRY, reading),
                         NXG_ERR_TOO_LARGE);
    }
    cJSON_Delete(reading);

    cJSON *empty = cJSON_CreateObject();
    n = nxg_msg_encode_data(buf, sizeof(buf), NXG_WIRE_GATEWAY, NXG_CHANNEL_STATUS, empty);
    assert_string_equal(buf, "{\"t\":\"status\"}");
    assert_int_equal(n, (int)strlen(buf));
    cJSON_AddStringToObject(empty, "t", "x"); /* reserved keys are refused */
    assert_int_equal(nxg_msg_encode_data(buf, sizeof(buf), NXG_WIRE_MQTT, NXG_CHANNEL_STATUS, empty), NXG_ERR_ARG);
    cJSON_Delete(empty);
    cJSON *array = cJSON_CreateArray();
    assert_int_equal(nxg_msg_encode_data(buf, sizeof(buf), NXG_WIRE_MQTT, NXG_CHANNEL_EVENT, array), NXG_ERR_ARG);
    cJSON_Delete(array);
}

static void noop(void *user, const nxg_command_t *cmd, nxg_reply_t *reply)
{
    (void)user;
    (void)cmd;
    (void)reply;
}

static void test_encode_manifest(void **state)
{
    (void)state;
    static const char *const actions[] = {"open", "close", NULL};
    const nxg_handler_t handlers[] = {{.target = "turn1", .actions = actions, .description = "door", .fn = noop}};
    char buf[512];
    assert_true(nxg_msg_encode_manifest(buf, sizeof(buf), handlers, 1) > 0);
    assert_string_equal(buf, "{\"capabilities\":["
                             "{\"action\":\"open\",\"targets\":[\"turn1\"],\"description\":\"door\","
                             "\"safetyClass\":\"normal\",\"supportsDryRun\":false},"
                             "{\"action\":\"close\",\"targets\":[\"turn1\"],\"description\":\"door\","
                             "\"safetyClass\":\"normal\",\"supportsDryRun\":false}],\"version\":1}");
    assert_int_equal(nxg_msg_encode_manifest(buf, 40, handlers, 1), NXG_ERR_TOO_LARGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_pair_ok),
        cmocka_unit_test(test_decode_server_messages),
        cmocka_unit_test(test_decode_cmd),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_encode_session_messages),
        cmocka_unit_test(test_encode_ack),
        cmocka_unit_test(test_encode_data_on_each_wire),
        cmocka_unit_test(test_encode_manifest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
