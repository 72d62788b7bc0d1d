/*
 * The plugin's ACL cache alone (acl_cache.h), past its size: built and run by
 * tests/mosquitto/test_acl_cache.py (`make -C mosquitto test_acl_cache`). Prints "ok" and exits 0,
 * or names the first failed check and exits 1.
 */
#include <stdio.h>

#include "acl_cache.h"

#define CHECK(cond, what) do{ if(!(cond)){ printf("FAILED: %s (line %d)\n", what, __LINE__); return 1; } }while(0)

static int fill(struct acl_cache *c, const char *key, time_t now)
{
	struct acl_cache_slot *slot = NULL;
	uint64_t hash = nxg_fnv1a(key);
	if(acl_cache_find(c, hash, key, now, &slot) != NULL) return 1; /* already there */
	if(slot == NULL) return -1;
	acl_cache_put(c, slot, key, hash, now, 60, false);
	return 0;
}

static int hit(struct acl_cache *c, const char *key, time_t now)
{
	struct acl_cache_slot *slot = NULL;
	return acl_cache_find(c, nxg_fnv1a(key), key, now, &slot) != NULL;
}

int main(void)
{
	struct acl_cache c;
	char key[ACL_CACHE_KEY_MAX];
	const time_t now = 1000;
	const int hot = 2000, cold = 200000; /* 3 x the 65,536 slots, as 13,000 idle devices' logins would fill */
	int hot_lost = 0, cold_kept = 0;

	CHECK(acl_cache_init(&c, 65536) == 0, "init");
	CHECK(acl_cache_entries(&c) == 65536, "the size asked for");

	/* hot entries: a publishing device's topics, used between every few cold fills */
	for(int i = 0; i < hot; i++){
		snprintf(key, sizeof(key), "H%d|H%d|nxg/H%d/telemetry|publish", i, i, i);
		CHECK(fill(&c, key, now) == 0, "a hot entry goes in");
	}
	for(int j = 0; j < cold; j++){
		snprintf(key, sizeof(key), "C%d|C%d|nxg/C%d/cmd|subscribe", j, j, j);
		CHECK(fill(&c, key, now) >= 0, "a cold entry finds a slot, the cache full or not");
		if(j % 4 == 0){
			/* every hot entry is used once per 4 x 2,000 = 8,000 cold fills, about one per set
			 * (8,192 sets): with LRU a hot entry goes only if 8 newer ones reach its set first */
			int i = (j / 4) % hot;
			snprintf(key, sizeof(key), "H%d|H%d|nxg/H%d/telemetry|publish", i, i, i);
			if(!hit(&c, key, now)){
				hot_lost++;
				fill(&c, key, now);
			}
		}
	}
	/* with the old rule (evict the entry expiring first, all expiring together) most of them went */
	printf("hot entries evicted: %d of %d uses; ", hot_lost, cold / 4);
	CHECK(hot_lost * 100 <= cold / 4, "LRU keeps entries used often (at most 1 % of their uses miss)");
	for(int j = 0; j < cold; j++){
		snprintf(key, sizeof(key), "C%d|C%d|nxg/C%d/cmd|subscribe", j, j, j);
		cold_kept += hit(&c, key, now);
	}
	printf("cold entries kept: %d of %d\n", cold_kept, cold);
	CHECK(cold_kept <= 65536 - hot, "bounded: never more entries than slots");
	CHECK(cold_kept > 65536 / 2, "the slots are used");
	/* the newest cold entries are the ones kept: LRU, not first come */
	snprintf(key, sizeof(key), "C%d|C%d|nxg/C%d/cmd|subscribe", cold - 1, cold - 1, cold - 1);
	CHECK(hit(&c, key, now), "the last entry filled is there");
	snprintf(key, sizeof(key), "C%d|C%d|nxg/C%d/cmd|subscribe", 0, 0, 0);
	CHECK(!hit(&c, key, now), "the first cold entry, never used again, is gone");

	/* expiry: nothing is answered past its time (ttl 60 s, spread over [30, 60] s) */
	snprintf(key, sizeof(key), "H0|H0|nxg/H0/telemetry|publish");
	CHECK(hit(&c, key, now + 29), "live within half its time");
	CHECK(!hit(&c, key, now + 61), "gone after its time");
	/* an expired entry's slot is taken before any live one */
	CHECK(fill(&c, key, now + 61) == 0, "filled again");
	CHECK(hit(&c, key, now + 62), "and there");

	/* a kick drops everything at once */
	acl_cache_drop_all(&c);
	CHECK(!hit(&c, key, now + 62), "dropped");
	acl_cache_free(&c);

	/* the smallest cache: one set */
	CHECK(acl_cache_init(&c, 1) == 0 && acl_cache_entries(&c) == ACL_CACHE_WAYS, "one set at least");
	for(int j = 0; j < 100; j++){
		snprintf(key, sizeof(key), "k%d", j);
		CHECK(fill(&c, key, now) == 0, "a full set still takes an entry");
	}
	for(int j = 0; j < 100; j++){
		snprintf(key, sizeof(key), "k%d", j);
		CHECK(hit(&c, key, now) == (j >= 100 - ACL_CACHE_WAYS), "the set holds the last 8 filled");
	}
	acl_cache_free(&c);
	printf("ok\n");
	return 0;
}
