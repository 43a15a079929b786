/*
 * openloop: a small open-loop HTTP/1.1 keep-alive load generator (single thread, epoll).
 *
 * The C twin of benchmarks/_load.py open_loop(), for runs where the generator shares the cores
 * with the server. Measured on the 2-core VM at 5,000 req/s: ~40 us of CPU per request, ~90% of
 * it kernel time (one send + one recv per request, plus the wake-ups an open loop needs), against
 * ~130 us for _load.py (which could not hold 5,000 req/s). Still report it next to any number.
 *
 *   gcc -O2 -Wall -Wextra -o benchmarks/.bin/openloop benchmarks/openloop.c
 *   openloop --host 127.0.0.1 --port P --rate R --seconds S --connections C \
 *            --max-connections M --timeout T --request-file F [--warmup N]
 *
 * F holds the complete raw request (request line, headers incl. Content-Length, blank line, body);
 * the same bytes are sent every time.
 *
 * - C keep-alive connections are opened up front and each sends N (default 1) warm-up requests
 *   (not counted). A warm-up failure is counted in "warmup_failures"; if no connection survives
 *   the warm-up the program exits with status 1.
 * - For S seconds arrival n is scheduled at start + n/R (CLOCK_MONOTONIC); floor(R*S) arrivals.
 *   Each due arrival takes an idle connection (LIFO); else, if fewer than M are open, opens a
 *   new one (non-blocking connect) and sends once connected; else counts "not_sent".
 *   Every arrival whose time has passed is dispatched at each wake-up with its own scheduled time.
 * - Latency runs from the SCHEDULED arrival to the last byte of the response (no coordinated
 *   omission). The timeout T also runs from the scheduled arrival (so it includes a connect);
 *   a timed-out request's connection is closed.
 * - After the last arrival it waits for the in-flight requests; since each one times out T after
 *   its arrival, that is at most T. Hence, exactly:
 *     sent + not_sent == floor(R*S)
 *     sent == sum(statuses) + timeouts + failures
 * - A server that closes an idle keep-alive connection, or answers "Connection: close", is not a
 *   failure: the connection is just dropped (counted in "closed_by_server").
 *
 * Output: one JSON object on stdout (see print_result). Latencies in ms; percentiles by linear
 * interpolation over the sorted latencies (like statistics.quantiles(method="inclusive")), null
 * when there is no data. p* / max over every answered request (any status); ok_* over 200 only.
 * cpu_user_s / cpu_sys_s: getrusage(RUSAGE_SELF) over the measured run (start of arrivals to
 * end of the drain), warm-up excluded. "statuses" has one key per status code seen ("other" for
 * an out-of-range code). "elapsed": start of arrivals to end of the drain, in seconds.
 * Extra fields: connections, max_connections (the arguments), connections_opened (during the
 * run), max_open, closed_by_server, warmup_failures, send_lag_mean_ms / send_lag_max_ms (how late
 * arrivals were dispatched: the generator's own lag; latency is charged from the schedule
 * anyway), timer ("epoll_pwait2", or "timerfd" when the kernel lacks it or OPENLOOP_TIMERFD=1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS 1000000000LL
#define TIMER_IDX 0xFFFFFFFFu
#define MAX_EVENTS 256

enum { C_FREE, C_CONNECTING, C_IDLE, C_BUSY, C_DONE };
enum { M_NONE, M_LENGTH, M_CHUNKED, M_CLOSE };

typedef struct conn {
    int fd;
    uint32_t idx, gen;
    int state;
    int warm_pending; /* an initial connection that has not finished its warm-up */
    int warmup_left;  /* warm-up requests still to complete */
    int want_out;    /* EPOLLOUT currently in the mask */
    int64_t sched, deadline;
    size_t woff;
    char *buf;
    size_t blen, bcap;
    /* response parser */
    size_t scan, hdr_end, need, cpos;
    int status, mode, conn_close;
    struct conn *prev, *next; /* in-flight list, ordered by deadline */
} conn;

/* ---- configuration ---- */
static struct sockaddr_in g_addr;
static double g_rate, g_seconds, g_timeout;
static long g_conns = 64, g_max = 1024, g_warmup = 1;
static char *g_req;
static size_t g_reqlen;

/* ---- state ---- */
static int g_ep, g_tfd = -1, g_use_pwait2;
static conn *g_pool;
static uint32_t *g_free;
static long g_nfree;
static conn **g_idle;
static long g_nidle;
static conn *g_head, *g_tail; /* in-flight FIFO */
static long g_open, g_max_open, g_opened_run, g_warm_pending;

/* ---- results ---- */
static long long g_sent, g_not_sent, g_timeouts, g_failures, g_warm_fail, g_closed_by_server;
static long long g_status[600], g_status_other;
static int64_t g_lag_max;
static double g_lag_sum;
typedef struct { double *v; size_t n, cap; } dvec;
static dvec g_lat, g_ok;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void die(const char *msg)
{
    fprintf(stderr, "openloop: %s\n", msg);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static void dpush(dvec *d, double x)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 65536;
        d->v = xrealloc(d->v, d->cap * sizeof(double));
    }
    d->v[d->n++] = x;
}

/* ---- lists ---- */
static void inflight_add(conn *c)
{
    c->next = NULL;
    c->prev = g_tail;
    if (g_tail) g_tail->next = c; else g_head = c;
    g_tail = c;
}

static void inflight_del(conn *c)
{
    if (c->prev) c->prev->next = c->next; else g_head = c->next;
    if (c->next) c->next->prev = c->prev; else g_tail = c->prev;
    c->prev = c->next = NULL;
}

static void idle_del(conn *c)
{
    for (long i = g_nidle - 1; i >= 0; i--)
        if (g_idle[i] == c) {
            memmove(&g_idle[i], &g_idle[i + 1], (size_t)(g_nidle - i - 1) * sizeof(conn *));
            g_nidle--;
            return;
        }
}

/* ---- connections ---- */
static uint64_t tag(conn *c) { return ((uint64_t)c->gen << 32) | c->idx; }

static void set_mask(conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.u64 = tag(c)};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &e);
}

static void conn_close(conn *c)
{
    if (c->state == C_BUSY || c->state == C_CONNECTING) inflight_del(c);
    else if (c->state == C_IDLE) idle_del(c);
    if (c->warm_pending) { c->warm_pending = 0; g_warm_pending--; }
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->gen++;     /* stale events of this fd in the current batch are ignored */
    c->state = C_FREE;
    g_free[g_nfree++] = c->idx;
    g_open--;
}

static void fail(conn *c)
{
    if (c->warm_pending) g_warm_fail++; else g_failures++;
    conn_close(c);
}

/* A new connection, in the in-flight list with the given schedule; NULL on immediate failure
 * (counted by the caller). */
static conn *conn_new(int64_t sched, int64_t deadline)
{
    if (!g_nfree) return NULL;
    conn *c = &g_pool[g_free[--g_nfree]];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) { g_free[g_nfree++] = c->idx; return NULL; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        g_free[g_nfree++] = c->idx;
        return NULL;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->sched = sched;
    c->deadline = deadline;
    c->warm_pending = 0;
    c->warmup_left = 0;
    c->blen = 0;
    struct epoll_event e = {.events = EPOLLOUT, .data.u64 = tag(c)};
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl ADD");
    c->want_out = 1;
    g_open++;
    if (g_open > g_max_open) g_max_open = g_open;
    inflight_add(c);
    return c;
}

static void do_write(conn *c)
{
    while (c->woff < g_reqlen) {
        ssize_t w = send(c->fd, g_req + c->woff, g_reqlen - c->woff, MSG_NOSIGNAL);
        if (w > 0) { c->woff += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->want_out) { set_mask(c, EPOLLIN | EPOLLOUT); c->want_out = 1; }
            return;
        }
        fail(c);
        return;
    }
    if (c->want_out) { set_mask(c, EPOLLIN); c->want_out = 0; }
}

/* Send the request on a connected connection (state C_IDLE or just connected). */
static void start_request(conn *c, int64_t sched, int64_t deadline, int in_list)
{
    c->sched = sched;
    c->deadline = deadline;
    c->woff = 0;
    c->blen = c->scan = c->hdr_end = c->need = c->cpos = 0;
    c->status = 0;
    c->mode = M_NONE;
    c->conn_close = 0;
    c->state = C_BUSY;
    if (!in_list) inflight_add(c);
    do_write(c);
}

/* ---- response parsing: 1 complete, 0 incomplete, -1 malformed ---- */
static int header_has(const char *v, const char *end, const char *word)
{
    size_t n = strlen(word);
    for (; v + n <= end; v++)
        if (strncasecmp(v, word, n) == 0) return 1;
    return 0;
}

static int parse_head(conn *c)
{
    char *b = c->buf, *end = b + c->hdr_end - 2; /* up to the last header's CRLF */
    if (c->hdr_end < 14 || memcmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ') return -1;
    if (b[9] < '0' || b[9] > '9' || b[10] < '0' || b[10] > '9' || b[11] < '0' || b[11] > '9')
        return -1;
    c->status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    long long clen = -1;
    int chunked = 0;
    char *p = memchr(b, '\n', (size_t)(end - b));
    while (p && p + 1 < end) {
        char *line = p + 1;
        char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon) {
            size_t klen = (size_t)(colon - line);
            char *v = colon + 1;
            if (klen == 14 && strncasecmp(line, "content-length", 14) == 0) {
                while (v < eol && (*v == ' ' || *v == '\t')) v++;
                if (v >= eol || *v < '0' || *v > '9') return -1;
                clen = 0;
                while (v < eol && *v >= '0' && *v <= '9') clen = clen * 10 + (*v++ - '0');
            } else if (klen == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
                chunked = header_has(v, eol, "chunked");
            } else if (klen == 10 && strncasecmp(line, "connection", 10) == 0) {
                c->conn_close = header_has(v, eol, "close");
            }
        }
        p = eol;
    }
    if ((c->status >= 100 && c->status < 200) || c->status == 204 || c->status == 304) {
        c->mode = M_LENGTH;
        c->need = c->hdr_end;
    } else if (chunked) {
        c->mode = M_CHUNKED;
        c->cpos = c->hdr_end;
    } else if (clen >= 0) {
        c->mode = M_LENGTH;
        c->need = c->hdr_end + (size_t)clen;
    } else {
        c->mode = M_CLOSE; /* body runs to EOF */
        c->conn_close = 1;
    }
    return 0;
}

static int parse(conn *c)
{
    if (!c->hdr_end) {
        size_t from = c->scan > 3 ? c->scan - 3 : 0;
        char *h = memmem(c->buf + from, c->blen - from, "\r\n\r\n", 4);
        if (!h) { c->scan = c->blen; return 0; }
        c->hdr_end = (size_t)(h - c->buf) + 4;
        if (parse_head(c) < 0) return -1;
    }
    if (c->mode == M_LENGTH) return c->blen >= c->need;
    if (c->mode == M_CLOSE) return 0;
    /* chunked */
    for (;;) {
        char *s = c->buf + c->cpos;
        char *lf = memmem(s, c->blen - c->cpos, "\r\n", 2);
        if (!lf) return 0;
        char *endp;
        unsigned long long size = strtoull(s, &endp, 16);
        if (endp == s) return -1;
        size_t after = (size_t)(lf - c->buf) + 2;
        if (size == 0) { /* trailers, then an empty line */
            if (c->blen >= after + 2 && c->buf[after] == '\r' && c->buf[after + 1] == '\n')
                return 1;
            if (c->blen > after &&
                memmem(c->buf + after, c->blen - after, "\r\n\r\n", 4))
                return 1;
            return 0;
        }
        if (c->blen < after + size + 2) return 0;
        c->cpos = after + size + 2;
    }
}

static void complete(conn *c)
{
    int64_t t = now_ns();
    inflight_del(c);
    if (c->warm_pending) {
        c->warmup_left--;
    } else {
        double ms = (double)(t - c->sched) / 1e6;
        dpush(&g_lat, ms);
        if (c->status == 200) dpush(&g_ok, ms);
        if (c->status >= 0 && c->status < 600) g_status[c->status]++; else g_status_other++;
    }
    if (c->conn_close) {
        c->state = C_DONE; /* in no list */
        g_closed_by_server++;
        conn_close(c);
        return;
    }
    if (c->warm_pending) {
        if (c->warmup_left > 0) {
            int64_t n = now_ns();
            start_request(c, n, n + (int64_t)(g_timeout * NS), 0);
            return;
        }
        c->warm_pending = 0;
        g_warm_pending--;
    }
    c->state = C_IDLE;
    g_idle[g_nidle++] = c;
}

static void on_readable(conn *c)
{
    if (c->bcap - c->blen < 1024) {
        size_t want = c->bcap * 2;
        if (c->mode == M_LENGTH && c->need + 1 > want) want = c->need + 1;
        c->buf = xrealloc(c->buf, want);
        c->bcap = want;
    }
    ssize_t r = recv(c->fd, c->buf + c->blen, c->bcap - c->blen, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        if (c->state == C_IDLE) { g_closed_by_server++; conn_close(c); } else fail(c);
        return;
    }
    if (r == 0) {
        if (c->state == C_IDLE) { g_closed_by_server++; conn_close(c); return; }
        if (c->hdr_end && c->mode == M_CLOSE) { complete(c); return; }
        fail(c); /* EOF mid-response */
        return;
    }
    if (c->state == C_IDLE) { conn_close(c); return; } /* unsolicited bytes */
    c->blen += (size_t)r;
    int p = parse(c);
    if (p < 0) fail(c);
    else if (p > 0) complete(c);
}

static void on_event(uint64_t u, uint32_t ev)
{
    uint32_t idx = (uint32_t)u, gen = (uint32_t)(u >> 32);
    if (idx == TIMER_IDX) {
        uint64_t x;
        ssize_t r = read(g_tfd, &x, sizeof x);
        (void)r;
        return;
    }
    conn *c = &g_pool[idx];
    if (c->gen != gen || c->state == C_FREE) return; /* stale */
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) { fail(c); return; }
        set_mask(c, EPOLLIN);
        c->want_out = 0;
        if (c->warm_pending && c->warmup_left == 0) { /* --warmup 0: just connect */
            inflight_del(c);
            c->warm_pending = 0;
            g_warm_pending--;
            c->state = C_IDLE;
            g_idle[g_nidle++] = c;
            return;
        }
        start_request(c, c->sched, c->deadline, 1);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == C_BUSY && c->woff < g_reqlen) {
        do_write(c);
        if (c->state == C_FREE || c->gen != gen) return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
}

/* ---- timing ---- */
static int64_t g_armed = -1;

static void wait_until(int64_t wake)
{
    struct epoll_event evs[MAX_EVENTS];
    int64_t now = now_ns();
    int64_t d = wake - now;
    if (d < 0) d = 0;
    int n;
#ifdef SYS_epoll_pwait2
    if (g_use_pwait2) {
        struct timespec ts = {.tv_sec = d / NS, .tv_nsec = d % NS};
        n = (int)syscall(SYS_epoll_pwait2, g_ep, evs, MAX_EVENTS, &ts, NULL, 8);
    } else
#endif
    {
        if (d == 0) {
            n = epoll_wait(g_ep, evs, MAX_EVENTS, 0);
        } else {
            if (wake != g_armed) {
                struct itimerspec its = {.it_value = {.tv_sec = wake / NS, .tv_nsec = wake % NS}};
                timerfd_settime(g_tfd, TFD_TIMER_ABSTIME, &its, NULL);
                g_armed = wake;
            }
            n = epoll_wait(g_ep, evs, MAX_EVENTS, -1);
        }
    }
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait failed");
    }
    for (int i = 0; i < n; i++) on_event(evs[i].data.u64, evs[i].events);
}

static void expire(int64_t now)
{
    while (g_head && g_head->deadline <= now) {
        conn *c = g_head;
        if (c->warm_pending) g_warm_fail++; else g_timeouts++;
        conn_close(c);
    }
}

/* ---- output ---- */
static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void put_pct(const char *name, dvec *d, double q)
{
    if (!d->n) { printf("\"%s\":null", name); return; }
    double pos = q * (double)(d->n - 1);
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    double v = i + 1 < d->n ? d->v[i] + (d->v[i + 1] - d->v[i]) * f : d->v[i];
    printf("\"%s\":%.3f", name, v);
}

static void print_result(double elapsed, double cu, double cs)
{
    qsort(g_lat.v, g_lat.n, sizeof(double), cmpd);
    qsort(g_ok.v, g_ok.n, sizeof(double), cmpd);
    printf("{\"offered_rate\":%.10g,\"seconds\":%.10g,\"sent\":%lld,\"not_sent\":%lld,\"statuses\":{",
           g_rate, g_seconds, g_sent, g_not_sent);
    int first = 1;
    for (int s = 0; s < 600; s++)
        if (g_status[s]) { printf("%s\"%d\":%lld", first ? "" : ",", s, g_status[s]); first = 0; }
    if (g_status_other) printf("%s\"other\":%lld", first ? "" : ",", g_status_other);
    printf("},\"timeouts\":%lld,\"failures\":%lld,\"elapsed\":%.6f,", g_timeouts, g_failures, elapsed);
    put_pct("p50_ms", &g_lat, 0.50); putchar(',');
    put_pct("p90_ms", &g_lat, 0.90); putchar(',');
    put_pct("p99_ms", &g_lat, 0.99); putchar(',');
    put_pct("p999_ms", &g_lat, 0.999); putchar(',');
    put_pct("max_ms", &g_lat, 1.0); putchar(',');
    put_pct("ok_p50_ms", &g_ok, 0.50); putchar(',');
    put_pct("ok_p99_ms", &g_ok, 0.99);
    printf(",\"cpu_user_s\":%.6f,\"cpu_sys_s\":%.6f", cu, cs);
    printf(",\"connections\":%ld,\"max_connections\":%ld,\"connections_opened\":%ld,"
           "\"max_open\":%ld,\"closed_by_server\":%lld,\"warmup_failures\":%lld,"
           "\"send_lag_mean_ms\":%.4f,\"send_lag_max_ms\":%.4f,\"timer\":\"%s\"}\n",
           g_conns, g_max, g_opened_run, g_max_open, g_closed_by_server, g_warm_fail,
           g_sent ? g_lag_sum / (double)g_sent / 1e6 : 0.0, (double)g_lag_max / 1e6,
           g_use_pwait2 ? "epoll_pwait2" : "timerfd");
    fflush(stdout);
}

/* ---- main ---- */
static void usage(void)
{
    fprintf(stderr,
            "usage: openloop --host 127.0.0.1 --port P --rate R --seconds S --connections C\n"
            "                --max-connections M --timeout T --request-file F [--warmup N]\n");
    exit(2);
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *file = NULL;
    long port = 0;
    g_timeout = 5.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = strtol(v, NULL, 10);
        else if (!strcmp(a, "--rate")) g_rate = strtod(v, NULL);
        else if (!strcmp(a, "--seconds")) g_seconds = strtod(v, NULL);
        else if (!strcmp(a, "--connections")) g_conns = strtol(v, NULL, 10);
        else if (!strcmp(a, "--max-connections")) g_max = strtol(v, NULL, 10);
        else if (!strcmp(a, "--timeout")) g_timeout = strtod(v, NULL);
        else if (!strcmp(a, "--request-file")) file = v;
        else if (!strcmp(a, "--warmup")) g_warmup = strtol(v, NULL, 10);
        else usage();
    }
    if (!file || port <= 0 || port > 65535 || !(g_rate > 0) || !(g_seconds > 0) || g_conns < 0 ||
        g_max < 1 || g_max < g_conns || !(g_timeout > 0) || g_warmup < 0)
        usage();
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) die("--host must be an IPv4 address");

    FILE *f = fopen(file, "rb");
    if (!f) die("cannot open --request-file");
    size_t cap = 4096;
    g_req = xrealloc(NULL, cap);
    size_t r;
    while ((r = fread(g_req + g_reqlen, 1, cap - g_reqlen, f)) > 0) {
        g_reqlen += r;
        if (g_reqlen == cap) g_req = xrealloc(g_req, cap *= 2);
    }
    fclose(f);
    if (!g_reqlen) die("empty --request-file");

    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake-ups on time, not up to 50 us late */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)g_max + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)g_max + 64 ? rl.rlim_max : (rlim_t)g_max + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1");
#ifdef SYS_epoll_pwait2
    {
        struct epoll_event ev;
        struct timespec ts = {0, 0};
        const char *force = getenv("OPENLOOP_TIMERFD");
        g_use_pwait2 = !(force && *force == '1') &&
                       syscall(SYS_epoll_pwait2, g_ep, &ev, 1, &ts, NULL, 8) >= 0;
    }
#endif
    if (!g_use_pwait2) {
        g_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (g_tfd < 0) die("timerfd_create");
        struct epoll_event e = {.events = EPOLLIN, .data.u64 = TIMER_IDX};
        epoll_ctl(g_ep, EPOLL_CTL_ADD, g_tfd, &e);
    }

    g_pool = calloc((size_t)g_max, sizeof(conn));
    g_free = calloc((size_t)g_max, sizeof(uint32_t));
    g_idle = calloc((size_t)g_max, sizeof(conn *));
    if (!g_pool || !g_free || !g_idle) die("out of memory");
    for (long i = 0; i < g_max; i++) {
        g_pool[i].idx = (uint32_t)i;
        g_pool[i].fd = -1;
        g_pool[i].bcap = 4096;
        g_pool[i].buf = xrealloc(NULL, 4096);
    }
    for (long i = g_max - 1; i >= 0; i--) g_free[g_nfree++] = (uint32_t)i;
    const int64_t tmo = (int64_t)(g_timeout * NS);

    /* ---- warm-up: open C connections, N requests each, concurrently ---- */
    {
        int64_t t0 = now_ns();
        for (long i = 0; i < g_conns; i++) {
            conn *c = conn_new(t0, t0 + tmo);
            if (!c) { g_warm_fail++; continue; }
            c->warm_pending = 1;
            c->warmup_left = (int)g_warmup;
            g_warm_pending++;
        }
        while (g_warm_pending) {
            wait_until(g_head ? g_head->deadline : now_ns() + tmo);
            expire(now_ns());
        }
        if (g_conns > 0 && g_open == 0) {
            fprintf(stderr, "openloop: no connection to %s:%ld survived the warm-up\n", host, port);
            return 1;
        }
        g_max_open = g_open;
    }

    /* ---- the run ---- */
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    const int64_t start = now_ns();
    const long long total = (long long)(g_rate * g_seconds + 1e-9);
    const double step = 1e9 / g_rate;
    long long n = 0;
    const int64_t hard_end = start + (int64_t)(g_seconds * NS) + tmo + NS;
    for (;;) {
        int64_t next = n < total ? start + (int64_t)((double)n * step) : INT64_MAX;
        if (g_head && g_head->deadline < next) next = g_head->deadline;
        if (next == INT64_MAX) break; /* all arrivals dispatched, nothing in flight */
        int64_t now = now_ns();
        if (now >= hard_end) break;
        wait_until(next); /* returns at once if next is due: events are always polled */
        now = now_ns();
        while (n < total) {
            int64_t sched = start + (int64_t)((double)n * step);
            if (sched > now) break;
            n++;
            int64_t lag = now - sched;
            if (g_nidle) {
                conn *c = g_idle[--g_nidle];
                g_sent++;
                g_lag_sum += (double)lag;
                if (lag > g_lag_max) g_lag_max = lag;
                start_request(c, sched, sched + tmo, 0);
            } else if (g_open < g_max) {
                g_sent++;
                g_lag_sum += (double)lag;
                if (lag > g_lag_max) g_lag_max = lag;
                g_opened_run++;
                if (!conn_new(sched, sched + tmo)) g_failures++;
            } else {
                g_not_sent++;
            }
        }
        expire(now);
    }
    int64_t end = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    /* anything still in flight here (only after hard_end, which should not happen) is a timeout */
    while (g_head) { g_timeouts++; conn_close(g_head); }
    print_result((double)(end - start) / 1e9, tv_s(ru1.ru_utime) - tv_s(ru0.ru_utime),
                 tv_s(ru1.ru_stime) - tv_s(ru0.ru_stime));
    return 0;
}
