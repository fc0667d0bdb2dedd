//! Numbers as operators read them in logs and reports.

use std::time::Duration;

/// `value` rounded to three decimals, so a log field reads `0.022`, not
/// `0.021994999999999997`.
pub fn three_decimals(value: f64) -> f64 {
    if value.is_finite() { (value * 1e3).round() / 1e3 } else { value }
}

/// A duration in milliseconds with three decimals (microsecond resolution).
pub fn millis(duration: Duration) -> f64 {
    three_decimals(duration.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_milliseconds_with_at_most_three_decimals() {
        assert_eq!(millis(Duration::from_nanos(21_994_999)).to_string(), "21.995");
        assert_eq!(millis(Duration::from_nanos(21_995)).to_string(), "0.022");
        assert_eq!(three_decimals(0.2061855670103093).to_string(), "0.206");
        assert!(three_decimals(f64::INFINITY).is_infinite());
    }
}
