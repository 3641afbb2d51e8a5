/* An ALSA capture PCM for tests/test_microphone.py: a microphone that is unplugged once, mid-stream.
 *
 * It serves a raw S16_LE mono 16 kHz file (looped) as fast as it is read, like the `null` + `file` device. After
 * `fail_after` frames every transfer returns -ENODEV, as the PCM of an unplugged USB microphone does, and the
 * device cannot be opened (PortAudio no longer lists it) for `gone_seconds`; then it is back for good. The
 * unplug time is kept in the `state` file, so it outlives the PortAudio instance that saw it fail. Build:
 * gcc -shared -fPIC -DPIC -o libasound_module_pcm_kwsunplug.so kws_unplug_pcm.c -lasound
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

typedef struct {
    snd_pcm_ioplug_t io;
    int infd, dead, may_fail;
    long delivered, fail_after;
    double gone_seconds;
    snd_pcm_uframes_t hw;
    char state[4096];
} kws_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* The state file holds the time until which the device stays unplugged; no file: it was never unplugged. */
static int gone_until(const char *path, double *until) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fscanf(f, "%lf", until) == 1;
    fclose(f);
    return ok;
}

static int kws_start(snd_pcm_ioplug_t *io) { (void)io; return 0; }
static int kws_stop(snd_pcm_ioplug_t *io) { (void)io; return 0; }
static int kws_prepare(snd_pcm_ioplug_t *io) { ((kws_t *)io->private_data)->hw = 0; return 0; }

/* Not paced: the buffer is always full, capture runs as fast as it is read (like the null device). */
static snd_pcm_sframes_t kws_pointer(snd_pcm_ioplug_t *io) {
    kws_t *k = io->private_data;
    if (io->state == SND_PCM_STATE_RUNNING && k->hw < io->appl_ptr + io->buffer_size)
        k->hw = io->appl_ptr + io->buffer_size;
    return k->hw;
}

static snd_pcm_sframes_t kws_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
                                      snd_pcm_uframes_t offset, snd_pcm_uframes_t size) {
    kws_t *k = io->private_data;
    if (k->may_fail && k->delivered >= k->fail_after && !k->dead) {
        FILE *f = fopen(k->state, "w");
        if (f) { fprintf(f, "%.6f\n", now_s() + k->gone_seconds); fclose(f); }
        k->dead = 1;
    }
    if (k->dead) return -ENODEV; /* what a USB microphone's PCM returns once it is unplugged */
    char *dst = (char *)areas[0].addr + (areas[0].first + areas[0].step * offset) / 8;
    size_t want = size * 2, got = 0;
    while (got < want) {
        ssize_t n = read(k->infd, dst + got, want - got);
        if (n < 0) return -errno;
        if (n == 0) { lseek(k->infd, 0, SEEK_SET); continue; }
        got += n;
    }
    k->delivered += size;
    return size;
}

static int kws_close(snd_pcm_ioplug_t *io) {
    kws_t *k = io->private_data;
    close(k->infd);
    close(io->poll_fd);
    free(k);
    return 0;
}

static const snd_pcm_ioplug_callback_t kws_callback = {
    .start = kws_start, .stop = kws_stop, .pointer = kws_pointer, .transfer = kws_transfer,
    .close = kws_close, .prepare = kws_prepare,
};

SND_PCM_PLUGIN_DEFINE_FUNC(kwsunplug) {
    snd_config_iterator_t i, next;
    const char *infile = NULL, *state = NULL;
    long fail_after = -1;
    double gone_seconds = 1.0;
    (void)root;
    snd_config_for_each(i, next, conf) {
        snd_config_t *n = snd_config_iterator_entry(i);
        const char *id;
        if (snd_config_get_id(n, &id) < 0) continue;
        if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint")) continue;
        if (!strcmp(id, "infile")) { snd_config_get_string(n, &infile); continue; }
        if (!strcmp(id, "state")) { snd_config_get_string(n, &state); continue; }
        if (!strcmp(id, "fail_after")) { snd_config_get_integer(n, &fail_after); continue; }
        if (!strcmp(id, "gone_seconds")) { snd_config_get_ireal(n, &gone_seconds); continue; }
        SNDERR("Unknown field %s", id);
        return -EINVAL;
    }
    if (!infile || !state || stream != SND_PCM_STREAM_CAPTURE) return -EINVAL;
    double until;
    int failed_before = gone_until(state, &until);
    if (failed_before && now_s() < until) return -ENODEV; /* unplugged: cannot be opened */
    kws_t *k = calloc(1, sizeof(*k));
    if (!k) return -ENOMEM;
    k->infd = open(infile, O_RDONLY);
    if (k->infd < 0) { free(k); return -errno; }
    snprintf(k->state, sizeof(k->state), "%s", state);
    k->fail_after = fail_after;
    k->may_fail = fail_after >= 0 && !failed_before; /* unplugged once; plugged back in, it stays */
    k->gone_seconds = gone_seconds;
    k->io.version = SND_PCM_IOPLUG_VERSION;
    k->io.name = "kws unpluggable test microphone";
    k->io.flags = SND_PCM_IOPLUG_FLAG_BOUNDARY_WA;
    k->io.poll_fd = eventfd(1, EFD_NONBLOCK); /* always readable */
    k->io.poll_events = POLLIN;
    k->io.mmap_rw = 0;
    k->io.callback = &kws_callback;
    k->io.private_data = k;
    int err = snd_pcm_ioplug_create(&k->io, name, stream, mode);
    if (err < 0) { close(k->infd); close(k->io.poll_fd); free(k); return err; }
    static const unsigned int access[] = {SND_PCM_ACCESS_RW_INTERLEAVED, SND_PCM_ACCESS_MMAP_INTERLEAVED};
    static const unsigned int formats[] = {SND_PCM_FORMAT_S16_LE};
    snd_pcm_ioplug_set_param_list(&k->io, SND_PCM_IOPLUG_HW_ACCESS, 2, access);
    snd_pcm_ioplug_set_param_list(&k->io, SND_PCM_IOPLUG_HW_FORMAT, 1, formats);
    snd_pcm_ioplug_set_param_minmax(&k->io, SND_PCM_IOPLUG_HW_CHANNELS, 1, 1);
    snd_pcm_ioplug_set_param_minmax(&k->io, SND_PCM_IOPLUG_HW_RATE, 16000, 16000);
    snd_pcm_ioplug_set_param_minmax(&k->io, SND_PCM_IOPLUG_HW_PERIOD_BYTES, 64, 1 << 20);
    snd_pcm_ioplug_set_param_minmax(&k->io, SND_PCM_IOPLUG_HW_PERIODS, 2, 64);
    *pcmp = k->io.pcm;
    return 0;
}

SND_PCM_PLUGIN_SYMBOL(kwsunplug);
