/* Replay driver: runs a fuzz target's LLVMFuzzerTestOneInput over every file of
   the directories (or files) given, without libFuzzer, so `make test` replays the
   corpus with ASan+UBSan under gcc too. Prints "replay: N passed, 0 failed";
   a crash aborts the run (a sanitizer report is the failure). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    uint8_t *buf;
    if (!f) return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return -1;
    }
    buf = (uint8_t *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    /* exact-size copy so ASan sees reads past the end */
    {
        uint8_t *exact = (uint8_t *)malloc(n ? (size_t)n : 1);
        if (exact) {
            memcpy(exact, buf, (size_t)n);
            LLVMFuzzerTestOneInput(exact, (size_t)n);
            free(exact);
        }
    }
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int i, count = 0, errors = 0;
    for (i = 1; i < argc; i++) {
        struct stat st;
        DIR *d;
        struct dirent *de;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "replay: cannot stat %s\n", argv[i]); errors++; continue; }
        if (!S_ISDIR(st.st_mode)) { if (replay_file(argv[i]) == 0) count++; else errors++; continue; }
        d = opendir(argv[i]);
        if (!d) { errors++; continue; }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            if (de->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if (replay_file(path) == 0) count++; else errors++;
        }
        closedir(d);
    }
    printf("replay: %d passed, %d failed\n", count, errors);
    return errors == 0 && count > 0 ? 0 : 1;
}
