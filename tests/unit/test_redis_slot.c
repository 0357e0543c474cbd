#include <criterion/criterion.h>
#include <string.h>

#include "parley_redis_slot.h"

static unsigned slot(const char *key)
{
    return parley_redis_slot((const unsigned char *) key, strlen(key));
}

Test(redis_slot, crc16_check_value)
{
    /* the check value of CRC16/XMODEM, also quoted by the cluster spec */
    cr_assert_eq(parley_redis_crc16((const unsigned char *) "123456789", 9),
                 0x31c3);
    cr_assert_eq(parley_redis_crc16((const unsigned char *) "", 0), 0);
}

Test(redis_slot, known_slots)
{
    /* values answered by CLUSTER KEYSLOT on Redis 7.0 (checked) */
    cr_assert_eq(slot("foo"), 12182);
    cr_assert_eq(slot("bar"), 5061);
    cr_assert_eq(slot("hello"), 866);
    cr_assert_eq(slot(""), 0);
}

Test(redis_slot, hash_tags)
{
    cr_assert_eq(slot("{user1000}.following"), slot("{user1000}.followers"));
    cr_assert_eq(slot("{user1000}.following"), slot("user1000"));
    /* the first {...} with something inside decides */
    cr_assert_eq(slot("foo{bar}{zap}"), slot("bar"));
    cr_assert_eq(slot("foo{{bar}}zap"), slot("{bar"));
    /* an empty tag means no tag: the whole key is hashed */
    cr_assert_eq(slot("foo{}{bar}"),
                 parley_redis_crc16((const unsigned char *) "foo{}{bar}", 10)
                     % PARLEY_REDIS_SLOTS);
    /* an unclosed brace is no tag either */
    cr_assert_eq(slot("foo{bar"),
                 parley_redis_crc16((const unsigned char *) "foo{bar", 7)
                     % PARLEY_REDIS_SLOTS);
}

Test(redis_slot, answers_of_a_real_cluster)
{
    /* redis-cli CLUSTER KEYSLOT on redis-server 7.0 --cluster-enabled yes */
    cr_assert_eq(slot("{user1000}.following"), 3443);
    cr_assert_eq(slot("foo{bar}{zap}"), 5061);
    cr_assert_eq(slot("foo{{bar}}zap"), 4015);
    cr_assert_eq(slot("foo{}{bar}"), 8363);
    cr_assert_eq(slot("foo{bar"), 15278);
}

Test(redis_slot, every_slot_is_in_range)
{
    unsigned char key[8];
    for (unsigned i = 0; i < 100000; i++) {
        memcpy(key, &i, sizeof(i));
        cr_assert_lt(parley_redis_slot(key, sizeof(i)), PARLEY_REDIS_SLOTS);
    }
}
