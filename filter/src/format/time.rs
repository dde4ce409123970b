//! `START_TIME(fmt)`: Envoy's `DateFormatter`, hand-written (no chrono, for
//! module size). Envoy replaces `%s` (epoch seconds), `%f` (nine digits of
//! the second's fraction) and `%1f`..`%9f` (the first N of those digits)
//! itself and hands the rest to `absl::FormatTime` in UTC; the absl
//! specifiers supported here are listed in [`SPECIFIERS`], any other is
//! refused at configure time rather than rendered differently.

/// The default of a bare `%START_TIME%` (Envoy's
/// `AccessLogDateTimeFormatter`): `2024-01-02T03:04:05.678Z`.
pub const DEFAULT: &str = "%Y-%m-%dT%H:%M:%E3SZ";

/// Specifiers accepted, for the error message.
pub const SPECIFIERS: &str = "%Y %C %y %m %d %e %j %H %I %M %S %p %a %A %b %h %B %u %w %T %D %F %R %Z %z %Ez %s %f %1f..%9f %E#S %E*S %E4Y %t %%";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Piece {
    Literal(Box<str>),
    /// A one-letter specifier.
    Spec(u8),
    /// `%Nf`: N digits of the fraction.
    Fraction(u8),
    /// `%E#S`: seconds with # fraction digits; `%E*S` as `None`.
    SecondsWithFraction(Option<u8>),
}

/// A parsed time format.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TimeFormat {
    pieces: Vec<Piece>,
}

impl TimeFormat {
    pub fn parse(text: &str) -> Result<TimeFormat, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'%' {
                let next = text[i..].find('%').map_or(text.len(), |n| i + n);
                literal.push_str(&text[i..next]);
                i = next;
                continue;
            }
            let rest = &bytes[i + 1..];
            let (piece, len) = match rest {
                [b'%', ..] => {
                    literal.push('%');
                    i += 2;
                    continue;
                }
                [b't', ..] => {
                    literal.push('\t');
                    i += 2;
                    continue;
                }
                [d @ b'1'..=b'9', b'f', ..] => (Piece::Fraction(d - b'0'), 2),
                [b'f', ..] => (Piece::Fraction(9), 1),
                [b'E', b'*', b'S', ..] => (Piece::SecondsWithFraction(None), 3),
                [b'E', d @ b'0'..=b'9', b'S', ..] => {
                    (Piece::SecondsWithFraction(Some(d - b'0')), 3)
                }
                [b'E', b'4', b'Y', ..] => (Piece::Spec(b'Y'), 3),
                [b'E', b'z', ..] => (Piece::Spec(b':'), 2),
                [c, ..] if b"YCymdejHIMSpaAbhBuwTDFRZzs".contains(c) => (Piece::Spec(*c), 1),
                _ => {
                    let shown: String = text[i..].chars().take(3).collect();
                    return Err(format!(
                        "time format {shown:?} is not supported (supported: {SPECIFIERS})"
                    ));
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal).into()));
            }
            pieces.push(piece);
            i += 1 + len;
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal.into()));
        }
        Ok(TimeFormat { pieces })
    }

    /// Appends the time `nanos` (since the epoch, UTC) to `out`.
    pub fn render(&self, nanos: i64, out: &mut Vec<u8>) {
        let seconds = nanos.div_euclid(1_000_000_000);
        let fraction = nanos.rem_euclid(1_000_000_000) as u32;
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        // 1970-01-01 was a Thursday (4).
        let weekday = (days + 4).rem_euclid(7) as u32;
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.extend_from_slice(text.as_bytes()),
                Piece::Fraction(width) => push_fraction(out, fraction, *width),
                Piece::SecondsWithFraction(digits) => {
                    push_padded(out, second.into(), 2);
                    let width = match digits {
                        Some(width) => *width,
                        // Shortest: trailing zeros dropped, no dot for zero.
                        None if fraction == 0 => 0,
                        None => 9 - fraction.trailing_zeros_decimal(),
                    };
                    if width > 0 {
                        out.push(b'.');
                        push_fraction(out, fraction, width);
                    }
                }
                Piece::Spec(spec) => match spec {
                    b'Y' => push_int(out, year),
                    b'C' => push_padded(out, year.div_euclid(100), 2),
                    b'y' => push_padded(out, year.rem_euclid(100), 2),
                    b'm' => push_padded(out, month.into(), 2),
                    b'd' => push_padded(out, day.into(), 2),
                    b'e' => {
                        if day < 10 {
                            out.push(b' ');
                        }
                        push_int(out, day.into());
                    }
                    b'j' => push_padded(out, day_of_year(year, month, day).into(), 3),
                    b'H' => push_padded(out, hour.into(), 2),
                    b'I' => push_padded(out, ((hour + 11) % 12 + 1).into(), 2),
                    b'M' => push_padded(out, minute.into(), 2),
                    b'S' => push_padded(out, second.into(), 2),
                    b'p' => out.extend_from_slice(if hour < 12 { b"AM" } else { b"PM" }),
                    b'a' => out.extend_from_slice(&WEEKDAYS[weekday as usize].as_bytes()[..3]),
                    b'A' => out.extend_from_slice(WEEKDAYS[weekday as usize].as_bytes()),
                    b'b' | b'h' => {
                        out.extend_from_slice(&MONTHS[usize::from(month) - 1].as_bytes()[..3])
                    }
                    b'B' => out.extend_from_slice(MONTHS[usize::from(month) - 1].as_bytes()),
                    b'u' => push_int(out, if weekday == 0 { 7 } else { weekday.into() }),
                    b'w' => push_int(out, weekday.into()),
                    b'T' => {
                        push_padded(out, hour.into(), 2);
                        out.push(b':');
                        push_padded(out, minute.into(), 2);
                        out.push(b':');
                        push_padded(out, second.into(), 2);
                    }
                    b'R' => {
                        push_padded(out, hour.into(), 2);
                        out.push(b':');
                        push_padded(out, minute.into(), 2);
                    }
                    b'D' => {
                        push_padded(out, month.into(), 2);
                        out.push(b'/');
                        push_padded(out, day.into(), 2);
                        out.push(b'/');
                        push_padded(out, year.rem_euclid(100), 2);
                    }
                    b'F' => {
                        push_int(out, year);
                        out.push(b'-');
                        push_padded(out, month.into(), 2);
                        out.push(b'-');
                        push_padded(out, day.into(), 2);
                    }
                    b'Z' => out.extend_from_slice(b"UTC"),
                    b'z' => out.extend_from_slice(b"+0000"),
                    b':' => out.extend_from_slice(b"+00:00"),
                    b's' => push_int(out, seconds),
                    _ => {}
                },
            }
        }
    }
}

const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn day_of_year(year: i64, month: u8, day: u8) -> u16 {
    const BEFORE: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    BEFORE[usize::from(month) - 1] + u16::from(day) + u16::from(leap && month > 2)
}

trait DecimalZeros {
    fn trailing_zeros_decimal(self) -> u8;
}

impl DecimalZeros for u32 {
    fn trailing_zeros_decimal(mut self) -> u8 {
        let mut zeros = 0;
        while self % 10 == 0 && zeros < 9 {
            self /= 10;
            zeros += 1;
        }
        zeros
    }
}

/// The first `width` of the nine fraction digits (truncated, as Envoy does).
fn push_fraction(out: &mut Vec<u8>, fraction: u32, width: u8) {
    let mut digits = [b'0'; 9];
    let mut rest = fraction;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[..usize::from(width)]);
}

fn push_padded(out: &mut Vec<u8>, value: i64, width: usize) {
    let mut digits = 1;
    let mut rest = value.unsigned_abs() / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    push_uint(out, value.unsigned_abs());
}

/// Decimal digits of `value`, without allocating.
pub fn push_int(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    push_uint(out, value.unsigned_abs());
}

pub fn push_uint(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-02-29T13:04:05.123456789Z, a Thursday, day 60 of a leap year.
    const T: i64 = 1_709_211_845_123_456_789;

    fn render(format: &str, nanos: i64) -> String {
        let mut out = Vec::new();
        TimeFormat::parse(format).unwrap().render(nanos, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_format_is_envoys_access_log_format() {
        assert_eq!(render(DEFAULT, T), "2024-02-29T13:04:05.123Z");
        assert_eq!(render(DEFAULT, 0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn envoy_extensions_seconds_and_fractions() {
        assert_eq!(render("%s", T), "1709211845");
        assert_eq!(render("%f", T), "123456789");
        assert_eq!(render("%1f|%3f|%6f|%9f", T), "1|123|123456|123456789");
        // Truncated, not rounded; zero-padded on the left.
        assert_eq!(render("%3f", 1_000_000_999_999_999), "999");
        assert_eq!(render("%6f", 5_000_001_000), "000001");
    }

    #[test]
    fn strftime_fields() {
        assert_eq!(
            render("%Y %C %y %m %d %e %j %H %I %M %S %p", T),
            "2024 20 24 02 29 29 060 13 01 04 05 PM"
        );
        assert_eq!(
            render("%a %A %b %h %B %u %w", T),
            "Thu Thursday Feb Feb February 4 4"
        );
        assert_eq!(
            render("%T|%D|%F|%R|%Z|%z|%Ez", T),
            "13:04:05|02/29/24|2024-02-29|13:04|UTC|+0000|+00:00"
        );
        assert_eq!(render("%e|%I%p", 1_704_070_800_000_000_000), " 1|01AM");
        assert_eq!(render("%E3S|%E*S|%E0S", T), "05.123|05.123456789|05");
        assert_eq!(render("%E*S", 1_500_000_000), "01.5");
        assert_eq!(render("%E*S", 1_000_000_000), "01");
        assert_eq!(render("100%% at%t%H", T), "100% at\t13");
    }

    #[test]
    fn calendar_edges() {
        // 2000-03-01 (after a 400-year leap day), 2100-03-01 (no leap day).
        assert_eq!(render("%F %j", 951_868_800_000_000_000), "2000-03-01 061");
        assert_eq!(render("%F %j", 4_107_542_400_000_000_000), "2100-03-01 060");
        assert_eq!(render("%F %a", -86_400_000_000_000), "1969-12-31 Wed");
    }

    #[test]
    fn unsupported_specifiers_are_refused() {
        for format in ["%c", "%n", "%Q", "%", "%E", "%Ek"] {
            let err = TimeFormat::parse(format).unwrap_err();
            assert!(
                err.contains("is not supported (supported: %Y"),
                "{format}: {err}"
            );
        }
    }
}
