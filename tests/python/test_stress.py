"""Short load test (about 5 s; scripts/stress runs the long one): 8 processes
reading random ranges of one virtual file and 8 threads reading every array,
all bytes compared with numpy's own files; the daemon's RSS stays flat."""

import os

import stress

SECONDS = float(os.environ.get("NPYFS_STRESS_SECONDS", "5"))


def test_concurrent_readers_get_numpys_bytes_and_rss_stays_flat(mount, tmp_path):
    manifest, refs = stress.build_source(tmp_path / "src")
    with mount(manifest) as mnt:
        result = stress.run(mnt, refs, SECONDS)
    print("\n" + result.report())
    assert not result.mismatches, result.mismatches[:5]
    assert result.process_reads > 0 and result.thread_reads > 0
    ok, why = result.rss_ok()
    assert ok, why
