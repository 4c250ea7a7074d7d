//! Storm's `Number`: an exact decimal, as Python's `decimal.Decimal` computes and prints it.
//!
//! `(1.50)` is a Number: sums, differences and products are exact and keep Python's exponents
//! (`(1.50)` prints `1.50`, `(0.1 + 0.2)` prints `0.3`); a quotient is exact when it can be
//! (with Python's ideal exponent), else rounded half-even. Synapse computes with 49 digits;
//! the coefficient here is an `i128`, so results are exact up to 38 digits and a result that
//! needs more is an overflow error (an inexact quotient is rounded to the 37 or 38 digits that
//! fit).

use std::cmp::Ordering;

use crate::error::SynErr;

/// The most digits a coefficient holds here.
const MAX_DIGITS: u32 = 38;

/// A decimal `coef * 10**exp`.
#[derive(Clone, Copy, Debug)]
pub struct Dec {
    coef: i128,
    exp: i32,
}

fn overflow() -> SynErr {
    SynErr::new("StormRuntimeError", "Invalid operation on a Number")
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn digits(mut n: i128) -> u32 {
    let mut count = 1;
    while n.abs() >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

impl Dec {
    /// A decimal from its text (`1.50`, `-0.5`, `3`, `1e3`).
    pub fn parse(text: &str) -> Option<Dec> {
        let text = text.trim();
        let (mant, exp) = match text.find(['e', 'E']) {
            Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (neg, mant) = match mant.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mant.strip_prefix('+').unwrap_or(mant)),
        };
        let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let all = format!("{int}{frac}");
        let coef: i128 = all.trim_start_matches('0').parse().unwrap_or(0);
        if all.trim_start_matches('0').len() > MAX_DIGITS as usize {
            return None;
        }
        let exp = exp.checked_sub(i32::try_from(frac.len()).ok()?)?;
        Some(Dec {
            coef: if neg { -coef } else { coef },
            exp,
        })
    }

    /// An integer as a decimal.
    pub fn from_int(i: i128) -> Dec {
        Dec { coef: i, exp: 0 }
    }

    /// A float as a decimal of its shortest repr (Synapse's `hugenum(float)`).
    pub fn from_f64(f: f64) -> Option<Dec> {
        Dec::parse(&crate::cortex::model::py::float_repr(f))
    }

    /// The nearest float.
    pub fn to_f64(self) -> f64 {
        format!("{}e{}", self.coef, self.exp)
            .parse()
            .unwrap_or(f64::NAN)
    }

    /// Truncated toward zero, as Python's `int(Decimal)`.
    pub fn trunc(self) -> Option<i128> {
        if self.exp >= 0 {
            return self.coef.checked_mul(pow10(self.exp as u32)?);
        }
        match pow10((-self.exp) as u32) {
            Some(p) => Some(self.coef / p),
            None => Some(0),
        }
    }

    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.coef == 0
    }

    /// Both as coefficients of the smaller exponent.
    fn align(a: Dec, b: Dec) -> Option<(i128, i128, i32)> {
        let exp = a.exp.min(b.exp);
        let scale = |d: Dec| d.coef.checked_mul(pow10((d.exp - exp) as u32)?);
        Some((scale(a)?, scale(b)?, exp))
    }

    /// `a + b`.
    pub fn add(self, other: Dec) -> Result<Dec, SynErr> {
        let (a, b, exp) = Dec::align(self, other).ok_or_else(overflow)?;
        Ok(Dec {
            coef: a.checked_add(b).ok_or_else(overflow)?,
            exp,
        })
    }

    /// `a - b`.
    pub fn sub(self, other: Dec) -> Result<Dec, SynErr> {
        self.add(Dec {
            coef: -other.coef,
            exp: other.exp,
        })
    }

    /// `a * b`.
    pub fn mul(self, other: Dec) -> Result<Dec, SynErr> {
        Ok(Dec {
            coef: self.coef.checked_mul(other.coef).ok_or_else(overflow)?,
            exp: self.exp.checked_add(other.exp).ok_or_else(overflow)?,
        })
    }

    /// `a / b`: exact at the exponent nearest Python's ideal one (`exp(a) - exp(b)`), else
    /// rounded half-even to the digits that fit an `i128`.
    pub fn div(self, other: Dec) -> Result<Dec, SynErr> {
        if other.coef == 0 {
            return Err(SynErr::new("StormRuntimeError", "Cannot divide by zero"));
        }
        let ideal = self.exp - other.exp;
        let (mut num, den) = (self.coef, other.coef);
        let mut exp = ideal;
        // Scale the dividend until the quotient is exact or has all the digits it may.
        loop {
            if num % den == 0 {
                let mut coef = num / den;
                // Drop zeros down to the ideal exponent.
                while exp < ideal && coef % 10 == 0 {
                    coef /= 10;
                    exp += 1;
                }
                return Ok(Dec { coef, exp });
            }
            let quot = num / den;
            if quot != 0 && digits(quot) >= MAX_DIGITS {
                return Ok(Dec::round_half_even(num, den, exp));
            }
            match num.checked_mul(10) {
                Some(n) => {
                    num = n;
                    exp -= 1;
                }
                None => return Ok(Dec::round_half_even(num, den, exp)),
            }
        }
    }

    fn round_half_even(num: i128, den: i128, exp: i32) -> Dec {
        let quot = num / den;
        let rem = num % den;
        let twice = rem.unsigned_abs() * 2;
        let den_abs = den.unsigned_abs();
        let away = twice > den_abs || (twice == den_abs && quot % 2 != 0);
        let sign = if (num < 0) != (den < 0) { -1 } else { 1 };
        Dec {
            coef: if away { quot + sign } else { quot },
            exp,
        }
    }

    /// Python's `str(Decimal)`.
    pub fn to_str(self) -> String {
        let neg = self.coef < 0;
        let body = self.coef.unsigned_abs().to_string();
        let n = body.len() as i32;
        let adjusted = self.exp + n - 1;
        let text = if self.exp <= 0 && adjusted >= -6 {
            if self.exp == 0 {
                body
            } else {
                let point = n + self.exp;
                if point > 0 {
                    format!("{}.{}", &body[..point as usize], &body[point as usize..])
                } else {
                    format!("0.{}{}", "0".repeat((-point) as usize), body)
                }
            }
        } else {
            let mant = if n > 1 {
                format!("{}.{}", &body[..1], &body[1..])
            } else {
                body
            };
            let sign = if adjusted < 0 { "-" } else { "+" };
            format!("{mant}E{sign}{}", adjusted.abs())
        };
        if neg { format!("-{text}") } else { text }
    }
}

impl PartialEq for Dec {
    fn eq(&self, other: &Dec) -> bool {
        self.partial_cmp(other) == Some(Ordering::Equal)
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, other: &Dec) -> Option<Ordering> {
        match Dec::align(*self, *other) {
            Some((a, b, _)) => Some(a.cmp(&b)),
            None => self.to_f64().partial_cmp(&other.to_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Dec {
        Dec::parse(text).expect("decimal")
    }

    #[test]
    fn decimals_compute_and_print_as_python() {
        assert_eq!(d("1.50").to_str(), "1.50");
        assert_eq!(d("0.1").add(d("0.2")).unwrap().to_str(), "0.3");
        assert_eq!(d("1.5").mul(d("2")).unwrap().to_str(), "3.0");
        assert_eq!(d("7.0").div(d("2")).unwrap().to_str(), "3.5");
        assert_eq!(d("1.0").div(d("4")).unwrap().to_str(), "0.25");
        assert_eq!(d("6").div(d("3")).unwrap().to_str(), "2");
        assert_eq!(d("1").sub(d("1.25")).unwrap().to_str(), "-0.25");
        assert_eq!(d("0.0000001").to_str(), "1E-7");
        assert_eq!(d("1e3").to_str(), "1E+3");
        assert_eq!(
            d("2.0").div(d("3")).unwrap().to_str(),
            "0.6666666666666666666666666666666666667"
        );
        assert_eq!(d("2.5").trunc(), Some(2));
        assert_eq!(d("-2.5").trunc(), Some(-2));
        assert!(d("1.50") == d("1.5"));
        assert!(d("1.49") < d("1.5"));
        assert_eq!(d("1.5").to_f64(), 1.5);
        assert!(Dec::parse("abc").is_none());
        assert!(d("1").div(d("0")).is_err());
    }
}
