"""The suites that ship with bench, installed as `bench_suites` so `bench run quickstart` works anywhere."""
