#!/usr/bin/env bash
# Installs the Debian tools that tests use, only when one is missing.
set -euo pipefail
need=()
# PostgreSQL server for test_postgres.py (started as the postgres user on a temp dir)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# headless browser for test_ui_browser.py (Playwright drives /usr/bin/chromium)
[ -x /usr/bin/chromium ] || need+=(chromium)
# bcftools for test_imputation.py (the imputed VCF parses and answers a region query)
command -v bcftools >/dev/null || need+=(bcftools)
# tabix for the bench tests (test_bench_cohort_vcf.py indexes the VCFs it writes)
command -v tabix >/dev/null || need+=(tabix)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
