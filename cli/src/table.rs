//! Output for people: tables with aligned columns, amounts as `1,234.50`. Output for
//! scripts is the API's JSON (`--json`), unchanged.

/// An amount as the API gives it (`"1234.50"`) with thousands separated: `1,234.50`.
pub(crate) fn amount(text: &str) -> String {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Rows under a header, each column as wide as its widest cell; columns named in `right`
/// (amounts, counts) are aligned right.
pub(crate) fn render(header: &[&str], rows: &[Vec<String>], right: &[&str]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, name)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain(std::iter::once(name.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        // Cells past the header's columns are not shown.
        let padded: Vec<String> = cells
            .iter()
            .zip(widths.iter().zip(header))
            .map(|(c, (width, name))| {
                let pad = width.saturating_sub(c.chars().count());
                if right.contains(name) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_get_thousands_separators() {
        for (given, shown) in [
            ("0.00", "0.00"),
            ("999.99", "999.99"),
            ("1000.00", "1,000.00"),
            ("1234.50", "1,234.50"),
            ("1234567.00", "1,234,567.00"),
            ("-1234.50", "-1,234.50"),
        ] {
            assert_eq!(amount(given), shown);
        }
    }

    #[test]
    fn columns_align_and_amounts_align_right() {
        let rows = vec![
            vec!["APP001-1".to_owned(), "1,234.50".to_owned()],
            vec!["APP001-22".to_owned(), "5.00".to_owned()],
        ];
        let out = render(&["order", "amount"], &rows, &["amount"]);
        assert_eq!(out, "order        amount\nAPP001-1   1,234.50\nAPP001-22      5.00\n");
    }
}
