# Statistics for the benchmark scripts (sourced; no side effects).

# median FILE [COLUMN]: the median of a column of numbers.
median() {
  awk -v c="${2:-1}" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# median_interval FILE [COLUMN]: "LO-HI", a distribution-free interval that holds the true median
# with at least 95 % confidence (the k-th lowest and k-th highest values, k from the binomial
# distribution of n fair coin flips), or "n/a" below 6 values. These machines' speed drifts between
# runs, so a round's ratio scatters by 5-10 %: the interval says how far a median of n rounds
# can be trusted.
median_interval() {
  awk -v c="${2:-1}" '{ print $c }' "$1" | sort -g | awk '{ v[NR] = $1 }
    END {
      n = NR; k = 0; cdf = 0; p = 0.5 ^ n
      # Largest k with 1 - 2 P(B <= k - 1) >= 0.95, B ~ Binomial(n, 1/2).
      for (j = 0; j < n / 2; j++) {
        if (1 - 2 * (cdf + p) < 0.95) break
        cdf += p; k = j + 1; p = p * (n - j) / (j + 1)
      }
      if (k == 0) print "n/a"; else printf "%.3f-%.3f\n", v[k], v[n - k + 1]
    }'
}
