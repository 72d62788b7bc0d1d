/* Unit tests of the platform-free OTA pieces: SHA-256 (FIPS 180-4 vectors, fed in odd pieces),
 * `_ota` params, URLs, HTTP response heads, and the client dispatching `_ota` to the port. */
#include "fakes.h"
#include "nxg_ota.h"
#include "nxg_sha256.h"

static void digest_of(const void *data, size_t len, size_t piece, char hex[NXG_SHA256_HEX_BYTES])
{
    nxg_sha256_t ctx;
    uint8_t digest[NXG_SHA256_BYTES];
    nxg_sha256_init(&ctx);
    for (size_t at = 0; at < len; at += piece) {
        nxg_sha256_update(&ctx, (const uint8_t *)data + at, len - at < piece ? len - at : piece);
    }
    nxg_sha256_final(&ctx, digest);
    nxg_sha256_hex(digest, hex);
}

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[NXG_SHA256_HEX_BYTES];
    digest_of("", 0, 1, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    digest_of("abc", 3, 1, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t piece = 1; piece <= 64; piece += 7) {
        digest_of(two_blocks, strlen(two_blocks), piece, hex);
        assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    static char million[1000000];
    memset(million, 'a', sizeof(million));
    digest_of(million, sizeof(million), 4093, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static const char *CHECKSUM = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

static bool parses(const char *json, nxg_ota_request_t *out)
{
    cJSON *params = cJSON_Parse(json);
    bool ok = nxg_ota_parse(params, out);
    cJSON_Delete(params);
    return ok;
}

static void test_ota_params(void **state)
{
    (void)state;
    nxg_ota_request_t request;
    char json[512];
    snprintf(json, sizeof(json), "{\"url\":\"http://h:1/x\",\"checksum\":\"%s\",\"version\":\"1.2.0-rc.1\",\"size\":42}",
             CHECKSUM);
    cJSON *params = cJSON_Parse(json);
    assert_true(nxg_ota_parse(params, &request));
    assert_string_equal(request.url, "http://h:1/x");
    assert_string_equal(request.version, "1.2.0-rc.1");
    assert_int_equal(request.size, 42);
    cJSON_Delete(params);
    const char *bad[] = {
        "{}",
        "{\"url\":\"ftp://h/x\",\"checksum\":\"%s\",\"version\":\"1.0.0\",\"size\":1}",
        "{\"url\":\"http://h/x\",\"checksum\":\"abc\",\"version\":\"1.0.0\",\"size\":1}",
        "{\"url\":\"http://h/x\",\"checksum\":\"%s\",\"version\":\"../../etc\",\"size\":1}",
        "{\"url\":\"http://h/x\",\"checksum\":\"%s\",\"version\":\"\",\"size\":1}",
        "{\"url\":\"http://h/x\",\"checksum\":\"%s\",\"version\":\"1.0.0\",\"size\":-1}",
        "{\"url\":\"http://h/x\",\"checksum\":\"%s\",\"version\":\"1.0.0\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), bad[i], CHECKSUM);
        assert_false(parses(json, &request));
    }
    char upper[65];
    snprintf(upper, sizeof(upper), "%s", CHECKSUM);
    upper[0] = 'B';
    snprintf(json, sizeof(json), "{\"url\":\"http://h/x\",\"checksum\":\"%s\",\"version\":\"1.0.0\",\"size\":1}", upper);
    assert_false(parses(json, &request));
}

static void test_url_parse(void **state)
{
    (void)state;
    char host[64], path[64];
    int port = 0;
    assert_true(nxg_url_parse("http://127.0.0.1:8080/api/v1/firmware/fw_1/download?x=1", host, sizeof(host), &port,
                              path, sizeof(path)));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_string_equal(path, "/api/v1/firmware/fw_1/download?x=1");
    assert_true(nxg_url_parse("http://example.com", host, sizeof(host), &port, path, sizeof(path)));
    assert_string_equal(host, "example.com");
    assert_int_equal(port, 80);
    assert_string_equal(path, "/");
    assert_false(nxg_url_parse("https://h/x", host, sizeof(host), &port, path, sizeof(path)));
    assert_false(nxg_url_parse("http://h:0/x", host, sizeof(host), &port, path, sizeof(path)));
    assert_false(nxg_url_parse("http://h:99999/x", host, sizeof(host), &port, path, sizeof(path)));
    assert_false(nxg_url_parse("http://:80/x", host, sizeof(host), &port, path, sizeof(path)));
    assert_false(nxg_url_parse("http://h/x", host, 1, &port, path, sizeof(path)));
}

static void test_http_head_parse(void **state)
{
    (void)state;
    nxg_http_head_t head;
    const char *partial = "HTTP/1.1 206 Partial Content\r\ncontent-length: 150000\r\n"
                          "Content-Range: bytes 50000-199999/200000\r\n\r\n";
    assert_true(nxg_http_head_parse(partial, strlen(partial), &head));
    assert_int_equal(head.status, 206);
    assert_int_equal(head.content_length, 150000);
    assert_int_equal(head.range_start, 50000);
    assert_int_equal(head.range_total, 200000);
    const char *whole = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
    assert_true(nxg_http_head_parse(whole, strlen(whole), &head));
    assert_int_equal(head.status, 200);
    assert_int_equal(head.range_start, -1);
    const char *refused = "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */10\r\n\r\n";
    assert_true(nxg_http_head_parse(refused, strlen(refused), &head));
    assert_int_equal(head.status, 416);
    assert_int_equal(head.range_start, -1);
    assert_false(nxg_http_head_parse("SSH-2.0-OpenSSH\r\n\r\n", 19, &head));
    assert_false(nxg_http_head_parse("HTTP/1.1 2", 10, &head));
}

/* ---- the client: `_ota` goes to the port's callback, whatever the manifest says ---------------- */

static fake_t fake;
static nxg_client_t client;
static int ota_calls;
static char ota_version[NXG_OTA_MAX_VERSION];

static const char *accept_ota(void *user, const nxg_ota_request_t *request)
{
    (void)user;
    ota_calls++;
    snprintf(ota_version, sizeof(ota_version), "%s", request->version);
    return NULL;
}

static void online(void)
{
    memset(&fake, 0, sizeof(fake));
    fake.wire = NXG_WIRE_MQTT;
    snprintf(fake.serial, sizeof(fake.serial), "S1");
    snprintf(fake.token, sizeof(fake.token), "nxgt_x");
    nxg_config_t config = fake_config(&fake, NULL, NULL);
    assert_int_equal(nxg_client_init(&client, &config), NXG_OK);
    nxg_client_tick(&client, 1000);
    nxg_client_on_transport_up(&client);
    assert_int_equal(client.state, NXG_STATE_ONLINE);
}

static void deliver_ota(const char *checksum)
{
    char text[512];
    snprintf(text, sizeof(text),
             "{\"t\":\"cmd\",\"id\":\"c_1\",\"action\":\"_ota\",\"params\":{\"url\":\"http://h:1/x\",\"checksum\":\"%s\","
             "\"version\":\"2.0.0\",\"size\":3}}",
             checksum);
    nxg_client_on_transport_message(&client, "nxg/S1/cmd", text, strlen(text));
}

static void test_client_hands_ota_to_the_port(void **state)
{
    (void)state;
    online();
    deliver_ota(CHECKSUM);
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c_1\",\"ok\":false,\"error\":\"firmware updates are not supported\"}");
    ota_calls = 0;
    assert_int_equal(nxg_client_on_ota(&client, accept_ota), NXG_OK);
    deliver_ota(CHECKSUM);
    assert_int_equal(ota_calls, 1);
    assert_string_equal(ota_version, "2.0.0");
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c_1\",\"ok\":true}");
    deliver_ota("not-a-checksum");
    assert_int_equal(ota_calls, 1);
    assert_string_equal(last_payload(&fake), "{\"t\":\"ack\",\"id\":\"c_1\",\"ok\":false,\"error\":\"invalid _ota params\"}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_ota_params),
        cmocka_unit_test(test_url_parse),
        cmocka_unit_test(test_http_head_parse),
        cmocka_unit_test(test_client_hands_ota_to_the_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
