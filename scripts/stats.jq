# jq helpers of the benchmark scripts (scripts/bench.sh, scripts/bench-ab.sh):
# jq -L scripts 'include "stats"; ...'

# median of an array of numbers, null for an empty one.
def median: sort | if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;

# f formats a figure: "-" for null, whole from 100 up, else 2 decimals.
def f: if . == null then "-" elif . >= 100 then round | tostring else (. * 100 | round) / 100 | tostring end;

# figure: the median of key $k over the runs $runs (objects), null ignored.
def figure($runs; $k): [$runs[] | .[$k] | select(. != null)] | median;
