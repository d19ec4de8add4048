#!/bin/sh
# GitOps from CI (docs/cli.md, "GitOps from CI"): validate a folder of workflow specs, show
# the plan, and apply it to the tenant with `orc`. Plain POSIX shell: a step of any CI.
#
#   examples/ci/orc-apply.sh [SPEC_DIR]        (default: workflows)
#
# Environment (the CI's secrets and variables):
#   ORC_SERVER, ORC_TENANT, ORC_TOKEN   where to apply, as whom (an editor's token, or a
#                                       service account's)
#   ORC_DRY_RUN=1     check and show the plan only (merge requests)
#   ORC_PRUNE=1       also delete the tenant's workflows that no file defines
#   ORC_SOURCE_COMMIT the commit the specs come from (default: `git rev-parse HEAD` when
#                     SPEC_DIR is in a git checkout without uncommitted changes there),
#                     recorded on each new version
#   ORC               the orc command (default: orc)
#
# Exits non-zero when a spec is invalid (each error with its file and field path), when
# the server refuses the apply, or when it cannot be reached: the pipeline fails.
set -eu

dir=${1:-workflows}
orc=${ORC:-orc}
: "${ORC_SERVER:?set ORC_SERVER to the service address}"
: "${ORC_TENANT:?set ORC_TENANT to the tenant slug}"
: "${ORC_TOKEN:?set ORC_TOKEN to an API token (a CI secret)}"

prune=
if [ "${ORC_PRUNE:-0}" = 1 ]; then prune=--prune; fi

commit=${ORC_SOURCE_COMMIT:-}
if [ -z "$commit" ] && command -v git >/dev/null 2>&1; then
    commit=$(git -C "$dir" rev-parse HEAD 2>/dev/null || true)
    # Specs with uncommitted changes are not that commit's: record none.
    if [ -n "$commit" ] && [ -n "$(git -C "$dir" status --porcelain -- . 2>/dev/null)" ]; then
        echo "orc-apply: $dir has uncommitted changes; no commit recorded" >&2
        commit=
    fi
fi

echo "--- validating $dir"
$orc validate "$dir"

echo "--- plan for tenant $ORC_TENANT on $ORC_SERVER"
$orc apply "$dir" --dry-run --diff $prune

if [ "${ORC_DRY_RUN:-0}" = 1 ]; then
    echo "--- dry run: nothing applied"
    exit 0
fi

echo "--- applying"
if [ -n "$commit" ]; then
    $orc apply "$dir" $prune --source-commit "$commit"
else
    $orc apply "$dir" $prune
fi
