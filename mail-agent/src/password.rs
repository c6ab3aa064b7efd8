//! Password rules per class of service (pure): what the `account` command enforces before it
//! stores a hash. Every broken rule is reported, not just the first.

use crate::config::PasswordRules;

/// Character classes counted by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Characters (Unicode scalar values).
    pub length: u32,
    /// Upper-case letters.
    pub upper: u32,
    /// Lower-case letters.
    pub lower: u32,
    /// ASCII digits.
    pub digit: u32,
    /// Punctuation and symbols: anything that is neither a letter, a digit nor white space.
    pub punct: u32,
}

/// Counts the character classes of `pw`.
pub fn counts(pw: &str) -> Counts {
    let mut c = Counts::default();
    for ch in pw.chars() {
        c.length += 1;
        if ch.is_uppercase() {
            c.upper += 1;
        } else if ch.is_lowercase() {
            c.lower += 1;
        } else if ch.is_ascii_digit() {
            c.digit += 1;
        } else if !ch.is_alphanumeric() && !ch.is_whitespace() {
            c.punct += 1;
        }
    }
    c
}

/// Checks `pw` against `rules`; the error lists every rule it breaks.
pub fn check(pw: &str, rules: &PasswordRules) -> Result<(), Vec<String>> {
    let mut broken = Vec::new();
    if pw.chars().any(char::is_control) {
        broken.push("must not contain control characters".to_owned());
    }
    let c = counts(pw);
    if c.length < rules.min_length {
        broken.push(format!(
            "must be at least {} characters long (it has {})",
            rules.min_length, c.length
        ));
    }
    if c.length > rules.max_length {
        broken.push(format!(
            "must be at most {} characters long (it has {})",
            rules.max_length, c.length
        ));
    }
    let need = [
        (c.upper, rules.min_upper, "upper-case letter"),
        (c.lower, rules.min_lower, "lower-case letter"),
        (c.digit, rules.min_digit, "digit"),
        (c.punct, rules.min_punct, "punctuation symbol"),
    ];
    for (have, min, what) in need {
        if have < min {
            let plural = if min == 1 { "" } else { "s" };
            broken.push(format!(
                "needs at least {min} {what}{plural} (it has {have})"
            ));
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassOfService;

    #[test]
    fn thesis_general_rules() {
        let r = ClassOfService::thesis_general().password;
        assert_eq!(check("Abcde1", &r), Ok(()));
        assert_eq!(
            check("abcde1", &r).unwrap_err(),
            vec!["needs at least 1 upper-case letter (it has 0)"]
        );
        assert_eq!(
            check("Ab1", &r).unwrap_err(),
            vec!["must be at least 6 characters long (it has 3)"]
        );
        assert_eq!(check("ABCDEF", &r).unwrap_err().len(), 2);
        assert!(check(&format!("Ab1{}", "x".repeat(62)), &r).is_err());
    }

    #[test]
    fn thesis_admin_rules_need_punctuation_and_ten_characters() {
        let r = ClassOfService::thesis_admin().password;
        assert_eq!(check("Abcdefgh1!", &r), Ok(()));
        assert_eq!(
            check("Abcdefgh12", &r).unwrap_err(),
            vec!["needs at least 1 punctuation symbol (it has 0)"]
        );
        assert!(check("Abcdef1!", &r).is_err());
    }

    #[test]
    fn counts_classes_including_non_ascii_letters() {
        assert_eq!(
            counts("Ñandú 9?"),
            Counts {
                length: 8,
                upper: 1,
                lower: 4,
                digit: 1,
                punct: 1
            }
        );
        let r = ClassOfService::thesis_general().password;
        assert!(check("Abcde1\u{7}", &r).is_err());
    }

    proptest::proptest! {
        /// The checker agrees with a direct reading of the rules on arbitrary strings.
        #[test]
        fn agrees_with_a_direct_reading(pw in "\\PC{0,20}", min_len in 1u32..12, up in 0u32..3, punct in 0u32..3) {
            let mut r = ClassOfService::thesis_general().password;
            r.min_length = min_len;
            r.min_upper = up;
            r.min_punct = punct;
            let count = |f: &dyn Fn(char) -> bool| u32::try_from(pw.chars().filter(|&c| f(c)).count()).unwrap();
            let n = count(&|_| true);
            let ups = count(&|c| c.is_uppercase());
            let lows = count(&|c| c.is_lowercase());
            let digits = count(&|c| c.is_ascii_digit());
            let puncts = count(&|c| !c.is_alphanumeric() && !c.is_whitespace());
            let expect = !pw.chars().any(char::is_control)
                && n >= min_len && n <= r.max_length && ups >= up && lows >= 1 && digits >= 1 && puncts >= punct;
            proptest::prop_assert_eq!(check(&pw, &r).is_ok(), expect);
        }
    }
}
