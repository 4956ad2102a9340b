/* A tiny assertion header for wsev's unit tests.
 *
 * Every CHECK* counts one check; a failing one prints file:line and what failed and
 * counts one failure. Output is capped (TEST_MAX_REPORTS) so that a failing sweep over
 * thousands of cases stays readable. A test program ends with
 *     return TEST_REPORT();
 * which prints a summary and returns non-zero when any check failed. */
#ifndef WSEV_TEST_H
#define WSEV_TEST_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifndef TEST_MAX_REPORTS
#define TEST_MAX_REPORTS 200
#endif

static unsigned long test_checks_;
static unsigned long test_failures_;
static const char *test_case_ = "";

#if defined(__GNUC__)
#define TEST_UNUSED_ __attribute__((unused))
#define TEST_PRINTF_(a, b) __attribute__((format(printf, a, b)))
#else
#define TEST_UNUSED_
#define TEST_PRINTF_(a, b)
#endif

static TEST_UNUSED_ TEST_PRINTF_(3, 4) void test_fail_(const char *file, int line, const char *fmt,
                                                       ...) {
  test_failures_++;
  if (test_failures_ > TEST_MAX_REPORTS) {
    if (test_failures_ == TEST_MAX_REPORTS + 1) fprintf(stderr, "... further failures not shown\n");
    return;
  }
  fprintf(stderr, "%s:%d: [%s] FAIL: ", file, line, test_case_);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

/* Hex dump of up to 64 bytes into a static buffer, for failure messages. */
static TEST_UNUSED_ const char *test_hex_(const void *p, size_t n) {
  static char buf[2][64 * 3 + 8];
  static int which;
  char *out = buf[which ^= 1];
  const uint8_t *b = (const uint8_t *)p;
  size_t i, o = 0;
  for (i = 0; i < n && i < 64; i++)
    o += (size_t)snprintf(out + o, sizeof buf[0] - o, "%s%02X", i ? " " : "", b[i]);
  if (n > 64) snprintf(out + o, sizeof buf[0] - o, " ...");
  if (n == 0) out[0] = '\0';
  return out;
}

#define TEST_CASE(name) (test_case_ = (name))

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    test_checks_++;                                                                                \
    if (!(cond)) test_fail_(__FILE__, __LINE__, "%s", #cond);                                      \
  } while (0)

/* CHECK with a printf-style description of the case printed on failure. */
#define CHECKF(cond, ...)                                                                          \
  do {                                                                                             \
    test_checks_++;                                                                                \
    if (!(cond)) {                                                                                 \
      char test_msg_[512];                                                                         \
      snprintf(test_msg_, sizeof test_msg_, __VA_ARGS__);                                          \
      test_fail_(__FILE__, __LINE__, "%s (%s)", #cond, test_msg_);                                 \
    }                                                                                              \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
  do {                                                                                             \
    long long test_a_ = (long long)(a), test_b_ = (long long)(b);                                  \
    test_checks_++;                                                                                \
    if (test_a_ != test_b_)                                                                        \
      test_fail_(__FILE__, __LINE__, "%s == %s: got %lld, expected %lld", #a, #b, test_a_,         \
                 test_b_);                                                                         \
  } while (0)

#define CHECK_EQ_INTF(a, b, ...)                                                                   \
  do {                                                                                             \
    long long test_a_ = (long long)(a), test_b_ = (long long)(b);                                  \
    test_checks_++;                                                                                \
    if (test_a_ != test_b_) {                                                                      \
      char test_msg_[512];                                                                         \
      snprintf(test_msg_, sizeof test_msg_, __VA_ARGS__);                                          \
      test_fail_(__FILE__, __LINE__, "%s == %s: got %lld, expected %lld (%s)", #a, #b, test_a_,    \
                 test_b_, test_msg_);                                                              \
    }                                                                                              \
  } while (0)

#define CHECK_EQ_UINT(a, b)                                                                        \
  do {                                                                                             \
    unsigned long long test_a_ = (unsigned long long)(a), test_b_ = (unsigned long long)(b);       \
    test_checks_++;                                                                                \
    if (test_a_ != test_b_)                                                                        \
      test_fail_(__FILE__, __LINE__,                                                               \
                 "%s == %s: got %llu (0x%llx), expected "                                          \
                 "%llu (0x%llx)",                                                                  \
                 #a, #b, test_a_, test_a_, test_b_, test_b_);                                      \
  } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
  do {                                                                                             \
    const char *test_a_ = (a), *test_b_ = (b);                                                     \
    test_checks_++;                                                                                \
    if (test_a_ == NULL || test_b_ == NULL || strcmp(test_a_, test_b_) != 0)                       \
      test_fail_(__FILE__, __LINE__, "%s == %s: got \"%s\", expected \"%s\"", #a, #b,              \
                 test_a_ ? test_a_ : "(null)", test_b_ ? test_b_ : "(null)");                      \
  } while (0)

#define CHECK_EQ_MEM(a, b, n)                                                                      \
  do {                                                                                             \
    const void *test_a_ = (a), *test_b_ = (b);                                                     \
    size_t test_n_ = (n);                                                                          \
    test_checks_++;                                                                                \
    if (memcmp(test_a_, test_b_, test_n_) != 0)                                                    \
      test_fail_(__FILE__, __LINE__,                                                               \
                 "%s == %s (%zu bytes): got [%s], "                                                \
                 "expected [%s]",                                                                  \
                 #a, #b, test_n_, test_hex_(test_a_, test_n_), test_hex_(test_b_, test_n_));       \
  } while (0)

#define TEST_REPORT() test_report_(__FILE__)

static TEST_UNUSED_ int test_report_(const char *file) {
  printf("%s: %lu checks, %lu failures\n", file, test_checks_, test_failures_);
  fflush(stdout);
  return test_failures_ ? 1 : 0;
}

/* Deterministic xorshift64* generator for randomized sweeps. */
static uint64_t test_rng_state_ = 0x9E3779B97F4A7C15ull;
static TEST_UNUSED_ uint64_t test_rand64(void) {
  uint64_t x = test_rng_state_;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  test_rng_state_ = x;
  return x * 0x2545F4914F6CDD1Dull;
}
static TEST_UNUSED_ uint32_t test_rand_below(uint32_t n) { return (uint32_t)(test_rand64() % n); }

#endif
