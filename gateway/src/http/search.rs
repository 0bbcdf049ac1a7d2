//! The search language of the HTTP API's list endpoints. `q` is terms `field op value`, all of
//! which must hold, joined by `,` or ` AND `; ops are `= != > >= < <=`; a value is double-quoted
//! (escapes `\"` and `\\`) or bare. `sortBy` is `field[:ASC|DESC]`, comma-separated, and
//! `offset`/`limit` page the result. Fields come from the caller's whitelist and every value is
//! checked against its field's type here, so evaluating a parsed [`Search`] cannot fail.

use crate::http::json::{exact_decimal, is_plain_decimal, time_ms};
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Decimal,
    Bool,
    Time,
}

#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    /// For Text fields with a closed set of values (e.g. status): the values allowed in `q`.
    pub allowed: Option<&'static [&'static str]>,
}

impl Field {
    /// A free-text field.
    pub const fn text(name: &'static str) -> Self {
        Self {
            name,
            ty: FieldType::Text,
            allowed: None,
        }
    }

    /// A text field whose values in `q` must be one of `allowed`.
    pub const fn closed(name: &'static str, allowed: &'static [&'static str]) -> Self {
        Self {
            name,
            ty: FieldType::Text,
            allowed: Some(allowed),
        }
    }

    pub const fn decimal(name: &'static str) -> Self {
        Self {
            name,
            ty: FieldType::Decimal,
            allowed: None,
        }
    }

    pub const fn boolean(name: &'static str) -> Self {
        Self {
            name,
            ty: FieldType::Bool,
            allowed: None,
        }
    }

    pub const fn time(name: &'static str) -> Self {
        Self {
            name,
            ty: FieldType::Time,
            allowed: None,
        }
    }
}

/// A field's value on one record. `Null`: the record has no value for it
/// (e.g. `balance.value` of a multi-asset wallet, a wallet without a name).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Text(String),
    Decimal(Decimal),
    Bool(bool),
    /// Milliseconds since the Unix epoch, UTC.
    Time(i64),
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// The operator as written in `q`.
    pub const fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    /// Whether `record op value` holds, given `record.cmp(value)`.
    const fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord.is_eq(),
            CmpOp::Ne => ord.is_ne(),
            CmpOp::Gt => ord.is_gt(),
            CmpOp::Ge => ord.is_ge(),
            CmpOp::Lt => ord.is_lt(),
            CmpOp::Le => ord.is_le(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// Index into the fields slice given to [`parse`].
    pub field: usize,
    pub op: CmpOp,
    /// Never `Null`, and always of the field's type.
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    /// Index into the fields slice given to [`parse`].
    pub field: usize,
    pub descending: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    pub terms: Vec<Term>,
    pub sort: Vec<SortKey>,
    pub offset: usize,
    pub limit: usize,
    /// `q` as given ("" if absent), and `sortBy` normalised (e.g. "ccyCode:ASC"; "" if absent): echoed in the response's meta.
    pub query: String,
    pub sort_by: String,
}

/// Where and why a query is wrong; the message is shown to API clients verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    /// "q" | "sortBy" | "offset" | "limit"
    pub param: &'static str,
    /// 1-based character (not byte) position in that parameter.
    pub position: Option<usize>,
    pub message: String,
}

impl QueryError {
    fn whole(param: &'static str, message: String) -> Self {
        Self {
            param,
            position: None,
            message,
        }
    }

    /// `index` is 0-based; positions shown to clients are 1-based.
    fn at(param: &'static str, index: usize, message: String) -> Self {
        Self {
            param,
            position: Some(index.saturating_add(1)),
            message,
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}, at character {p}: {}", self.param, self.message),
            None => write!(f, "{}: {}", self.param, self.message),
        }
    }
}

impl std::error::Error for QueryError {}

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 1000;
/// Bounds on the work one request can ask of the parser and of every record's evaluation.
pub const MAX_QUERY_BYTES: usize = 4096;
pub const MAX_TERMS: usize = 32;
pub const MAX_SORT_KEYS: usize = 8;
/// Client input quoted back in an error is cut to this many characters, so a huge parameter
/// cannot make a huge error response.
const MAX_ECHO_CHARS: usize = 64;

/// Parses the four query parameters of a list request; the first wrong one, in the order
/// `q`, `sortBy`, `offset`, `limit`, is the error.
pub fn parse(
    fields: &[Field],
    q: Option<&str>,
    sort_by: Option<&str>,
    offset: Option<&str>,
    limit: Option<&str>,
) -> Result<Search, QueryError> {
    let query = q.unwrap_or("");
    let terms = parse_q(fields, query)?;
    let (sort, sort_by) = parse_sort_by(fields, sort_by)?;
    let offset = parse_offset(offset)?;
    let limit = parse_limit(limit)?;
    Ok(Search {
        terms,
        sort,
        offset,
        limit,
        query: query.to_owned(),
        sort_by,
    })
}

impl Search {
    /// Whether a record matches every term. `value_of(i)` is the record's value of `fields[i]`.
    ///
    /// A record with no value (`Null`) matches only `!=`: it is not equal to anything, and not
    /// above or below anything. A value of the wrong type from `value_of` (a caller's bug) is
    /// treated like `Null` rather than panicking.
    pub fn matches(&self, value_of: impl Fn(usize) -> Value) -> bool {
        self.terms.iter().all(
            |term| match compare_same_type(&value_of(term.field), &term.value) {
                Some(ord) => term.op.holds(ord),
                None => term.op == CmpOp::Ne,
            },
        )
    }

    /// Orders two records by the sort keys in turn; `Equal` if all keys tie (callers then tie-break by id).
    ///
    /// Nulls sort last in ascending order, and a descending key reverses the whole comparison,
    /// so there they come first: one rule, and `DESC` is exactly the mirror of `ASC`.
    pub fn compare(&self, a: impl Fn(usize) -> Value, b: impl Fn(usize) -> Value) -> Ordering {
        for key in &self.sort {
            let ord = sort_order(&a(key.field), &b(key.field));
            let ord = if key.descending { ord.reverse() } else { ord };
            if ord.is_ne() {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// `None` when the two are not comparable: either is `Null`, or their types differ.
fn compare_same_type(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        // Byte order, not locale order: stable, and the same as the id tie-break's.
        (Value::Text(x), Value::Text(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        // Numeric, so "10.50" and "10.5" are equal.
        (Value::Decimal(x), Value::Decimal(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// A total order: values of one type by value, otherwise by type, with `Null` after all.
fn sort_order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Text(_) => 0,
            Value::Decimal(_) => 1,
            Value::Bool(_) => 2,
            Value::Time(_) => 3,
            Value::Null => 4,
        }
    }
    compare_same_type(a, b).unwrap_or_else(|| rank(a).cmp(&rank(b)))
}

/// Parses `q`; empty or all-whitespace means no terms.
pub fn parse_q(fields: &[Field], q: &str) -> Result<Vec<Term>, QueryError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(QueryError::whole(
            "q",
            format!("must be at most {MAX_QUERY_BYTES} bytes, got {}", q.len()),
        ));
    }
    let mut lx = Lexer {
        chars: q.chars().collect(),
        i: 0,
    };
    let mut terms = Vec::new();
    lx.skip_ws();
    if lx.peek().is_none() {
        return Ok(terms);
    }
    loop {
        if terms.len() >= MAX_TERMS {
            return Err(lx.error(format!("too many terms: at most {MAX_TERMS} are allowed")));
        }
        terms.push(lx.term(fields)?);
        let had_ws = lx.skip_ws();
        match lx.peek() {
            None => return Ok(terms),
            Some(',') => lx.i += 1,
            // `AND` needs whitespace before it, or `x=1AND` would split a bare value's tail.
            Some(_) if had_ws && lx.at_and() => lx.i += 3,
            Some(_) => {
                return Err(lx.error(format!(
                    "expected ',' or 'AND' between terms, found {}",
                    lx.found()
                )));
            }
        }
        lx.skip_ws();
    }
}

/// Holds `q` as characters so that every position is a character position and no index can
/// split a UTF-8 sequence; `q` is bounded, so the copy is too.
struct Lexer {
    chars: Vec<char>,
    i: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i.saturating_add(ahead)).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.i += 1;
        }
        c
    }

    /// Skips whitespace; whether there was any.
    fn skip_ws(&mut self) -> bool {
        let start = self.i;
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
        self.i > start
    }

    /// Whether the joiner `AND` (any case) starts here, ending at whitespace or the end.
    fn at_and(&self) -> bool {
        let word = [self.peek(), self.peek_at(1), self.peek_at(2)];
        let is_and = matches!(word, [Some('a' | 'A'), Some('n' | 'N'), Some('d' | 'D')]);
        is_and && self.peek_at(3).is_none_or(char::is_whitespace)
    }

    fn found(&self) -> String {
        match self.peek() {
            Some(c) => format!("'{}'", echo_char(c)),
            None => "end of input".to_owned(),
        }
    }

    fn error(&self, message: String) -> QueryError {
        QueryError::at("q", self.i, message)
    }

    fn term(&mut self, fields: &[Field]) -> Result<Term, QueryError> {
        let name_at = self.i;
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|&c| is_name_char(c)) {
            name.push(c);
            self.i += 1;
        }
        if name.is_empty() {
            return Err(self.error(format!("expected a field name, found {}", self.found())));
        }
        let Some((field, spec)) = fields.iter().enumerate().find(|(_, f)| f.name == name) else {
            let message = if name.eq_ignore_ascii_case("AND") {
                "expected a field name, found 'AND'".to_owned()
            } else {
                unknown_field(&name, fields)
            };
            return Err(QueryError::at("q", name_at, message));
        };

        self.skip_ws();
        let op_at = self.i;
        let Some(op) = self.op() else {
            return Err(self.error(format!(
                "expected an operator (= != > >= < <=), found {}",
                self.found()
            )));
        };
        if spec.ty == FieldType::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(QueryError::at(
                "q",
                op_at,
                format!(
                    "operator '{}' is not allowed on the boolean field '{}'; use = or !=",
                    op.symbol(),
                    spec.name
                ),
            ));
        }

        self.skip_ws();
        let value_at = self.i;
        let text = self.value()?;
        let value = typed_value(spec, &text).map_err(|m| QueryError::at("q", value_at, m))?;
        Ok(Term { field, op, value })
    }

    /// Longest match first, so `>=` is never read as `>` followed by a value `=...`.
    fn op(&mut self) -> Option<CmpOp> {
        let (op, len) = match (self.peek(), self.peek_at(1)) {
            (Some('!'), Some('=')) => (CmpOp::Ne, 2),
            (Some('>'), Some('=')) => (CmpOp::Ge, 2),
            (Some('<'), Some('=')) => (CmpOp::Le, 2),
            (Some('='), _) => (CmpOp::Eq, 1),
            (Some('>'), _) => (CmpOp::Gt, 1),
            (Some('<'), _) => (CmpOp::Lt, 1),
            _ => return None,
        };
        self.i += len;
        Some(op)
    }

    fn value(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some('"') => self.quoted(),
            // A bare value starting with an operator character is almost surely a typo such
            // as `==` or `=>`; reading it as text would silently match nothing.
            None | Some(',' | '=' | '!' | '<' | '>') => {
                Err(self.error(format!("expected a value, found {}", self.found())))
            }
            Some(_) => self.bare(),
        }
    }

    fn quoted(&mut self) -> Result<String, QueryError> {
        let open_at = self.i;
        self.i += 1;
        let unterminated = || {
            QueryError::at(
                "q",
                open_at,
                format!(
                    "unterminated quoted value: the quote at character {} is never closed",
                    open_at.saturating_add(1)
                ),
            )
        };
        let mut text = String::new();
        loop {
            let backslash_at = self.i;
            match self.bump() {
                None => return Err(unterminated()),
                Some('"') => return Ok(text),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => text.push(c),
                    Some(c) => {
                        return Err(QueryError::at(
                            "q",
                            backslash_at,
                            format!(
                                "invalid escape '\\{}' in a quoted value; only \\\" and \\\\ are allowed",
                                echo_char(c)
                            ),
                        ));
                    }
                    None => return Err(unterminated()),
                },
                Some(c) => text.push(c),
            }
        }
    }

    fn bare(&mut self) -> Result<String, QueryError> {
        let mut text = String::new();
        while let Some(c) = self.peek().filter(|&c| c != ',' && !c.is_whitespace()) {
            if c == '"' {
                return Err(self.error(
                    "unexpected '\"' inside an unquoted value; quote the whole value".to_owned(),
                ));
            }
            text.push(c);
            self.i += 1;
        }
        Ok(text)
    }
}

/// Field names are read as a run of these, so the operator needs no whitespace before it.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn typed_value(field: &Field, text: &str) -> Result<Value, String> {
    let name = field.name;
    match field.ty {
        FieldType::Text => match field.allowed {
            Some(allowed) if !allowed.contains(&text) => Err(format!(
                "invalid value '{}' for '{name}'; allowed values: {}",
                echo(text),
                allowed.join(", ")
            )),
            _ => Ok(Value::Text(text.to_owned())),
        },
        FieldType::Decimal => {
            if !is_plain_decimal(text) {
                return Err(format!(
                    "invalid decimal '{}' for '{name}': expected digits with an optional leading '-' and '.', like \"10.50\"",
                    echo(text)
                ));
            }
            exact_decimal(text).map(Value::Decimal).ok_or_else(|| {
                format!(
                    "decimal '{}' for '{name}' is out of range or has more than 28 decimal places",
                    echo(text)
                )
            })
        }
        FieldType::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!(
                "invalid boolean '{}' for '{name}': expected true or false",
                echo(text)
            )),
        },
        FieldType::Time => time_ms(text)
            .map(Value::Time)
            .map_err(|why| format!("invalid time '{}' for '{name}': {why}", echo(text))),
    }
}

fn unknown_field(name: &str, fields: &[Field]) -> String {
    let allowed: Vec<&str> = fields.iter().map(|f| f.name).collect();
    format!(
        "unknown field '{}'; allowed fields: {}",
        echo(name),
        allowed.join(", ")
    )
}

/// Parses `sortBy` (`field[:ASC|DESC]`, comma-separated) into keys and its normalised text,
/// e.g. `"ccyCode:ASC,name:DESC"`. Absent, empty or all-whitespace means no sort keys.
pub fn parse_sort_by(
    fields: &[Field],
    sort_by: Option<&str>,
) -> Result<(Vec<SortKey>, String), QueryError> {
    let s = sort_by.unwrap_or("");
    if s.trim().is_empty() {
        return Ok((Vec::new(), String::new()));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut keys: Vec<SortKey> = Vec::new();
    let mut normalised = String::new();
    let mut item_at = 0usize;
    for item in chars.split(|&c| c == ',') {
        if keys.len() >= MAX_SORT_KEYS {
            return Err(QueryError::at(
                "sortBy",
                item_at,
                format!("too many sort keys: at most {MAX_SORT_KEYS} are allowed"),
            ));
        }
        let (key, name_at) = sort_key(fields, item, item_at)?;
        if keys.iter().any(|k| k.field == key.field) {
            let name = fields.get(key.field).map_or("", |f| f.name);
            return Err(QueryError::at(
                "sortBy",
                name_at,
                format!("field '{name}' appears more than once"),
            ));
        }
        if !normalised.is_empty() {
            normalised.push(',');
        }
        if let Some(f) = fields.get(key.field) {
            normalised.push_str(f.name);
        }
        normalised.push_str(if key.descending { ":DESC" } else { ":ASC" });
        keys.push(key);
        item_at = item_at.saturating_add(item.len()).saturating_add(1);
    }
    Ok((keys, normalised))
}

/// One `field[:DIR]` item starting at character `at`; also where its field name starts.
fn sort_key(fields: &[Field], item: &[char], at: usize) -> Result<(SortKey, usize), QueryError> {
    let mut parts = item.splitn(2, |&c| c == ':');
    let name_part = parts.next().unwrap_or(&[]);
    let dir_part = parts.next();

    let (name_at, name) = trim(name_part, at);
    if name.is_empty() {
        let message = if dir_part.is_some() {
            "expected a field name before ':'"
        } else {
            "empty sort key; expected field, field:ASC or field:DESC"
        };
        return Err(QueryError::at("sortBy", name_at, message.to_owned()));
    }
    let name: String = name.iter().collect();
    let Some(field) = fields.iter().position(|f| f.name == name) else {
        return Err(QueryError::at(
            "sortBy",
            name_at,
            unknown_field(&name, fields),
        ));
    };

    let descending = match dir_part {
        None => false,
        Some(dir_part) => {
            let dir_base = at.saturating_add(name_part.len()).saturating_add(1);
            let (dir_at, dir) = trim(dir_part, dir_base);
            let dir: String = dir.iter().collect();
            if dir.eq_ignore_ascii_case("ASC") {
                false
            } else if dir.eq_ignore_ascii_case("DESC") {
                true
            } else if dir.is_empty() {
                return Err(QueryError::at(
                    "sortBy",
                    dir_at,
                    "expected ASC or DESC after ':'".to_owned(),
                ));
            } else {
                return Err(QueryError::at(
                    "sortBy",
                    dir_at,
                    format!(
                        "invalid sort direction '{}'; expected ASC or DESC",
                        echo(&dir)
                    ),
                ));
            }
        }
    };
    Ok((SortKey { field, descending }, name_at))
}

/// Trims whitespace off `s`, which starts at character `at`; where the rest starts, and it.
fn trim(s: &[char], at: usize) -> (usize, &[char]) {
    let lead = s.iter().take_while(|c| c.is_whitespace()).count();
    let rest = s.get(lead..).unwrap_or(&[]);
    let trail = rest.iter().rev().take_while(|c| c.is_whitespace()).count();
    let body = rest.get(..rest.len().saturating_sub(trail)).unwrap_or(&[]);
    (at.saturating_add(lead), body)
}

/// `offset`: absent means 0.
pub fn parse_offset(offset: Option<&str>) -> Result<usize, QueryError> {
    let Some(s) = offset else { return Ok(0) };
    match parse_unsigned(s) {
        Some(Ok(n)) => Ok(n),
        Some(Err(())) => Err(QueryError::whole(
            "offset",
            format!("must be at most {}, got '{}'", usize::MAX, echo(s)),
        )),
        None => Err(QueryError::whole(
            "offset",
            format!("must be a non-negative integer, got '{}'", echo(s)),
        )),
    }
}

/// `limit`: absent means [`DEFAULT_LIMIT`].
pub fn parse_limit(limit: Option<&str>) -> Result<usize, QueryError> {
    let Some(s) = limit else {
        return Ok(DEFAULT_LIMIT);
    };
    match parse_unsigned(s) {
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(QueryError::whole(
            "limit",
            format!(
                "must be an integer from 1 to {MAX_LIMIT}, got '{}'",
                echo(s)
            ),
        )),
    }
}

/// ASCII digits only: `str::parse` alone would also take a leading `+`.
/// `None`: not digits; `Some(Err)`: digits too large for `usize`.
fn parse_unsigned(s: &str) -> Option<Result<usize, ()>> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().map_err(|_| ()))
}

/// Client input as quoted in a message: at most [`MAX_ECHO_CHARS`] characters, with control
/// characters escaped so the message stays on one line.
fn echo(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_ECHO_CHARS).map(echo_char).collect();
    if s.chars().nth(MAX_ECHO_CHARS).is_some() {
        out.push('…');
    }
    out
}

fn echo_char(c: char) -> String {
    if c.is_control() {
        c.escape_default().collect()
    } else {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    const STATUSES: &[&str] = &["active", "restricted", "suspended", "closed"];
    const TYPES: &[&str] = &["customer", "client_admin", "general"];

    /// The wallet list's fields, in the contract's order.
    const WALLET: &[Field] = &[
        Field::text("id"),
        Field::text("ccyCode"),
        Field::closed("status", STATUSES),
        Field::closed("type", TYPES),
        Field::text("name"),
        Field::text("customerId"),
        Field::boolean("isFavourite"),
        Field::time("createdAt"),
        Field::decimal("balance.value"),
        Field::decimal("pendingBalance.value"),
    ];
    const ID: usize = 0;
    const CCY: usize = 1;
    const STATUS: usize = 2;
    const NAME: usize = 4;
    const FAV: usize = 6;
    const CREATED: usize = 7;
    const BALANCE: usize = 8;
    const PENDING: usize = 9;

    fn q(s: &str) -> Result<Search, QueryError> {
        parse(WALLET, Some(s), None, None, None)
    }

    fn terms(s: &str) -> Vec<Term> {
        q(s).unwrap().terms
    }

    fn q_err(s: &str) -> QueryError {
        q(s).unwrap_err()
    }

    fn sort_err(s: &str) -> QueryError {
        parse(WALLET, None, Some(s), None, None).unwrap_err()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn term(field: usize, op: CmpOp, value: Value) -> Term {
        Term { field, op, value }
    }

    /// A record given as (field, value) pairs; the fields not listed are Null.
    fn record(values: &[(usize, Value)]) -> impl Fn(usize) -> Value + '_ {
        move |i| {
            values
                .iter()
                .find(|(f, _)| *f == i)
                .map_or(Value::Null, |(_, v)| v.clone())
        }
    }

    #[track_caller]
    fn assert_err(e: &QueryError, param: &str, position: Option<usize>, needle: &str) {
        assert_eq!(e.param, param, "{e}");
        assert_eq!(e.position, position, "{e}");
        assert!(e.message.contains(needle), "{e:?} lacks {needle:?}");
    }

    // --- the seed example and defaults ---

    #[test]
    fn seed_example() {
        let s = parse(
            WALLET,
            Some(r#"balance.value>="0""#),
            Some("ccyCode:ASC"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            s.terms,
            vec![term(BALANCE, CmpOp::Ge, Value::Decimal(dec("0")))]
        );
        assert_eq!(
            s.sort,
            vec![SortKey {
                field: CCY,
                descending: false
            }]
        );
        assert_eq!((s.offset, s.limit), (0, DEFAULT_LIMIT));
        assert_eq!(s.query, r#"balance.value>="0""#);
        assert_eq!(s.sort_by, "ccyCode:ASC");
        assert!(s.matches(record(&[(BALANCE, Value::Decimal(dec("0.00")))])));
        assert!(s.matches(record(&[(BALANCE, Value::Decimal(dec("12.5")))])));
        assert!(!s.matches(record(&[(BALANCE, Value::Decimal(dec("-0.01")))])));
        assert!(!s.matches(record(&[])));
    }

    #[test]
    fn openapi_examples() {
        let s = parse(
            WALLET,
            Some(r#"ccyCode = "USD" AND status = "active""#),
            Some("createdAt:DESC,name:ASC"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            s.terms,
            vec![
                term(CCY, CmpOp::Eq, text("USD")),
                term(STATUS, CmpOp::Eq, text("active"))
            ]
        );
        assert_eq!(s.sort_by, "createdAt:DESC,name:ASC");
        assert_eq!(
            terms(r#"balance.value >= "100.00",isFavourite = "true""#),
            vec![
                term(BALANCE, CmpOp::Ge, Value::Decimal(dec("100"))),
                term(FAV, CmpOp::Eq, Value::Bool(true))
            ]
        );
    }

    #[test]
    fn all_absent() {
        let s = parse(WALLET, None, None, None, None).unwrap();
        assert_eq!(
            s,
            Search {
                terms: vec![],
                sort: vec![],
                offset: 0,
                limit: 10,
                query: String::new(),
                sort_by: String::new(),
            }
        );
        assert!(s.matches(record(&[])));
        assert_eq!(s.compare(record(&[]), record(&[])), Ordering::Equal);
    }

    #[test]
    fn empty_and_blank_q_mean_no_terms() {
        assert!(terms("").is_empty());
        assert!(terms("  \t ").is_empty());
        assert_eq!(q("   ").unwrap().query, "   ");
    }

    // --- operators ---

    #[test]
    fn each_operator() {
        let cases = [
            ("=", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
        ];
        for (sym, op) in cases {
            assert_eq!(op.symbol(), sym);
            let t = terms(&format!(r#"balance.value{sym}"10""#));
            assert_eq!(
                t,
                vec![term(BALANCE, op, Value::Decimal(dec("10")))],
                "{sym}"
            );
            let t = terms(&format!("balance.value {sym} 10"));
            assert_eq!(
                t,
                vec![term(BALANCE, op, Value::Decimal(dec("10")))],
                "{sym}"
            );
        }
    }

    #[test]
    fn operator_semantics() {
        let at = |v: &str| record_value(BALANCE, Value::Decimal(dec(v)));
        let expect = [
            // op, 9, 10, 11
            ("=", [false, true, false]),
            ("!=", [true, false, true]),
            (">", [false, false, true]),
            (">=", [false, true, true]),
            ("<", [true, false, false]),
            ("<=", [true, true, false]),
        ];
        for (sym, want) in expect {
            let s = q(&format!("balance.value{sym}10")).unwrap();
            let got = [s.matches(at("9")), s.matches(at("10")), s.matches(at("11"))];
            assert_eq!(got, want, "{sym}");
        }
    }

    fn record_value(field: usize, v: Value) -> impl Fn(usize) -> Value {
        move |i| if i == field { v.clone() } else { Value::Null }
    }

    #[test]
    fn text_compares_by_bytes() {
        let s = q("name>B").unwrap();
        assert!(s.matches(record_value(NAME, text("a")))); // 'a' (0x61) > 'B' (0x42)
        assert!(s.matches(record_value(NAME, text("BB"))));
        assert!(!s.matches(record_value(NAME, text("B"))));
        assert!(!s.matches(record_value(NAME, text("A"))));
        let s = q(r#"name="é""#).unwrap();
        assert!(s.matches(record_value(NAME, text("é"))));
        assert!(!s.matches(record_value(NAME, text("e"))));
    }

    #[test]
    fn time_values() {
        let t = terms(r#"createdAt>="2024-05-01T12:00:00Z""#);
        assert_eq!(
            t,
            vec![term(CREATED, CmpOp::Ge, Value::Time(1_714_564_800_000))]
        );
        // Offsets are honoured; milliseconds kept.
        let t = terms("createdAt<2024-05-01T14:00:00.250+02:00");
        assert_eq!(
            t,
            vec![term(CREATED, CmpOp::Lt, Value::Time(1_714_564_800_250))]
        );
        // Before the epoch.
        let t = terms(r#"createdAt="1969-12-31T23:59:59.999Z""#);
        assert_eq!(t, vec![term(CREATED, CmpOp::Eq, Value::Time(-1))]);
        // Zero sub-millisecond digits are fine.
        let t = terms(r#"createdAt="1970-01-01T00:00:00.001000Z""#);
        assert_eq!(t, vec![term(CREATED, CmpOp::Eq, Value::Time(1))]);

        let s = q(r#"createdAt>"2024-05-01T12:00:00Z""#).unwrap();
        assert!(s.matches(record_value(CREATED, Value::Time(1_714_564_800_001))));
        assert!(!s.matches(record_value(CREATED, Value::Time(1_714_564_800_000))));
    }

    #[test]
    fn bool_values() {
        assert_eq!(
            terms("isFavourite=true"),
            vec![term(FAV, CmpOp::Eq, Value::Bool(true))]
        );
        assert_eq!(
            terms(r#"isFavourite != "false""#),
            vec![term(FAV, CmpOp::Ne, Value::Bool(false))]
        );
        let s = q("isFavourite=true").unwrap();
        assert!(s.matches(record_value(FAV, Value::Bool(true))));
        assert!(!s.matches(record_value(FAV, Value::Bool(false))));
    }

    #[test]
    fn closed_text_values() {
        assert_eq!(
            terms("status=active"),
            vec![term(STATUS, CmpOp::Eq, text("active"))]
        );
        assert_eq!(
            terms(r#"type!="general""#),
            vec![term(3, CmpOp::Ne, text("general"))]
        );
    }

    // --- joiners and whitespace ---

    #[test]
    fn comma_joiner() {
        let t = terms(r#"ccyCode="USD",status="active""#);
        assert_eq!(
            t,
            vec![
                term(CCY, CmpOp::Eq, text("USD")),
                term(STATUS, CmpOp::Eq, text("active"))
            ]
        );
        assert_eq!(terms(r#"ccyCode="USD" , status="active""#), t);
        assert_eq!(terms("ccyCode=USD,status=active"), t);
    }

    #[test]
    fn and_joiner_any_case() {
        let want = vec![
            term(CCY, CmpOp::Eq, text("USD")),
            term(STATUS, CmpOp::Eq, text("active")),
        ];
        for and in ["AND", "and", "And", "aNd"] {
            assert_eq!(
                terms(&format!(r#"ccyCode="USD" {and} status="active""#)),
                want
            );
            assert_eq!(terms(&format!("ccyCode=USD\t{and}\n status=active")), want);
        }
    }

    #[test]
    fn mixed_joiners() {
        let t = terms(
            r#"  ccyCode = "USD" AND status="active",balance.value>1 and isFavourite=true  "#,
        );
        assert_eq!(
            t,
            vec![
                term(CCY, CmpOp::Eq, text("USD")),
                term(STATUS, CmpOp::Eq, text("active")),
                term(BALANCE, CmpOp::Gt, Value::Decimal(dec("1"))),
                term(FAV, CmpOp::Eq, Value::Bool(true)),
            ]
        );
        let s = q(r#"ccyCode="USD" AND balance.value>1"#).unwrap();
        let usd_2 = [(CCY, text("USD")), (BALANCE, Value::Decimal(dec("2")))];
        let eur_2 = [(CCY, text("EUR")), (BALANCE, Value::Decimal(dec("2")))];
        let usd_1 = [(CCY, text("USD")), (BALANCE, Value::Decimal(dec("1")))];
        assert!(s.matches(record(&usd_2)));
        assert!(!s.matches(record(&eur_2)));
        assert!(!s.matches(record(&usd_1)));
    }

    #[test]
    fn and_is_only_a_joiner_between_terms() {
        // As a quoted or bare value, AND is just text.
        assert_eq!(
            terms(r#"name="AND""#),
            vec![term(NAME, CmpOp::Eq, text("AND"))]
        );
        assert_eq!(terms("name=AND"), vec![term(NAME, CmpOp::Eq, text("AND"))]);
        assert_eq!(
            terms("name=xAND"),
            vec![term(NAME, CmpOp::Eq, text("xAND"))]
        );
        // `ANDx` is not a joiner.
        assert_err(
            &q_err("name=a ANDx name=b"),
            "q",
            Some(8),
            "expected ',' or 'AND'",
        );
    }

    // --- values ---

    #[test]
    fn quoted_with_escapes() {
        assert_eq!(
            terms(r#"name="say \"hi\"""#),
            vec![term(NAME, CmpOp::Eq, text(r#"say "hi""#))]
        );
        assert_eq!(
            terms(r#"name="a\\b""#),
            vec![term(NAME, CmpOp::Eq, text(r"a\b"))]
        );
        assert_eq!(
            terms(r#"name="\\""#),
            vec![term(NAME, CmpOp::Eq, text("\\"))]
        );
        // Separators, spaces and operators are plain text inside quotes.
        assert_eq!(
            terms(r#"name=" a, b AND c >= d ""#),
            vec![term(NAME, CmpOp::Eq, text(" a, b AND c >= d "))]
        );
        assert_eq!(terms(r#"name="""#), vec![term(NAME, CmpOp::Eq, text(""))]);
        assert_eq!(
            terms(r#"name="日本 🎉""#),
            vec![term(NAME, CmpOp::Eq, text("日本 🎉"))]
        );
    }

    #[test]
    fn bare_values() {
        assert_eq!(
            terms("ccyCode=USD"),
            vec![term(CCY, CmpOp::Eq, text("USD"))]
        );
        assert_eq!(
            terms("balance.value>=-1.50"),
            vec![term(BALANCE, CmpOp::Ge, Value::Decimal(dec("-1.5")))]
        );
        assert_eq!(
            terms("customerId=c-1:2/3,name=x"),
            vec![
                term(5, CmpOp::Eq, text("c-1:2/3")),
                term(NAME, CmpOp::Eq, text("x"))
            ]
        );
        assert_eq!(
            terms("name=日本"),
            vec![term(NAME, CmpOp::Eq, text("日本"))]
        );
    }

    #[test]
    fn decimal_equality_is_numeric() {
        let s = q(r#"balance.value="10.50""#).unwrap();
        assert!(s.matches(record_value(BALANCE, Value::Decimal(dec("10.5")))));
        assert!(s.matches(record_value(BALANCE, Value::Decimal(dec("10.500000")))));
        assert!(!s.matches(record_value(BALANCE, Value::Decimal(dec("10.51")))));
        let s = q("balance.value!=10.5").unwrap();
        assert!(!s.matches(record_value(BALANCE, Value::Decimal(dec("10.50")))));
        // -0 is 0.
        let s = q("balance.value=-0").unwrap();
        assert!(s.matches(record_value(BALANCE, Value::Decimal(dec("0.00")))));
        // Large and precise values stay exact.
        let s = q("pendingBalance.value>0.0000000000000000000000000001").unwrap();
        assert!(!s.matches(record_value(PENDING, Value::Decimal(Decimal::ZERO))));
        assert!(s.matches(record_value(
            PENDING,
            Value::Decimal(dec("0.0000000000000000000000000002"))
        )));
        assert!(q("balance.value<79228162514264337593543950335").is_ok());
    }

    // --- Null semantics ---

    #[test]
    fn null_matches_only_not_equal() {
        for (sym, want) in [
            ("=", false),
            ("!=", true),
            (">", false),
            (">=", false),
            ("<", false),
            ("<=", false),
        ] {
            let s = q(&format!("balance.value{sym}0")).unwrap();
            assert_eq!(s.matches(record(&[])), want, "{sym}");
            let s = q(&format!("name{sym}x")).unwrap();
            assert_eq!(s.matches(record(&[])), want, "{sym}");
        }
        // A value of the wrong type from the caller acts as Null instead of panicking.
        let s = q("balance.value=1").unwrap();
        assert!(!s.matches(record_value(BALANCE, text("1"))));
        let s = q("balance.value!=1").unwrap();
        assert!(s.matches(record_value(BALANCE, text("1"))));
    }

    #[test]
    fn nulls_sort_last_ascending_first_descending() {
        let asc = parse(WALLET, None, Some("balance.value"), None, None).unwrap();
        let desc = parse(WALLET, None, Some("balance.value:DESC"), None, None).unwrap();
        let one = [(BALANCE, Value::Decimal(dec("1")))];
        let null: [(usize, Value); 0] = [];
        assert_eq!(asc.compare(record(&one), record(&null)), Ordering::Less);
        assert_eq!(asc.compare(record(&null), record(&one)), Ordering::Greater);
        assert_eq!(desc.compare(record(&one), record(&null)), Ordering::Greater);
        assert_eq!(desc.compare(record(&null), record(&one)), Ordering::Less);
        assert_eq!(asc.compare(record(&null), record(&null)), Ordering::Equal);
        assert_eq!(desc.compare(record(&null), record(&null)), Ordering::Equal);
    }

    // --- sorting ---

    #[test]
    fn multi_key_sort_with_desc() {
        let s = parse(
            WALLET,
            None,
            Some("ccyCode:ASC,balance.value:DESC,name"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            s.sort,
            vec![
                SortKey {
                    field: CCY,
                    descending: false
                },
                SortKey {
                    field: BALANCE,
                    descending: true
                },
                SortKey {
                    field: NAME,
                    descending: false
                },
            ]
        );
        assert_eq!(s.sort_by, "ccyCode:ASC,balance.value:DESC,name:ASC");

        let rows: Vec<Vec<(usize, Value)>> = vec![
            vec![
                (ID, text("1")),
                (CCY, text("USD")),
                (BALANCE, Value::Decimal(dec("5"))),
            ],
            vec![
                (ID, text("2")),
                (CCY, text("EUR")),
                (BALANCE, Value::Decimal(dec("1"))),
            ],
            vec![
                (ID, text("3")),
                (CCY, text("USD")),
                (BALANCE, Value::Decimal(dec("10.0"))),
            ],
            vec![
                (ID, text("4")),
                (CCY, text("EUR")),
                (BALANCE, Value::Decimal(dec("7"))),
            ],
            vec![(ID, text("5")), (CCY, text("USD"))],
            vec![
                (ID, text("6")),
                (CCY, text("USD")),
                (BALANCE, Value::Decimal(dec("5.00"))),
                (NAME, text("a")),
            ],
        ];
        let mut order: Vec<&Vec<(usize, Value)>> = rows.iter().collect();
        order.sort_by(|a, b| s.compare(record(a), record(b)));
        let ids: Vec<Value> = order.iter().map(|r| record(r)(ID)).collect();
        // EUR by balance descending; then USD: no balance (Null first in DESC), 10, then the
        // two 5s by name ascending with the nameless (Null) last.
        assert_eq!(ids, ["4", "2", "5", "3", "6", "1"].map(text));
    }

    #[test]
    fn sort_direction_any_case_and_whitespace() {
        let s = parse(
            WALLET,
            None,
            Some(" ccyCode : desc , name:Asc,id:DeSc "),
            None,
            None,
        )
        .unwrap();
        assert_eq!(s.sort_by, "ccyCode:DESC,name:ASC,id:DESC");
        assert_eq!(
            parse(WALLET, None, Some(""), None, None).unwrap().sort_by,
            ""
        );
        assert_eq!(
            parse(WALLET, None, Some("  "), None, None).unwrap().sort,
            vec![]
        );
    }

    #[test]
    fn normalised_sort_by_reparses_to_itself() {
        let (keys, norm) = parse_sort_by(WALLET, Some("createdAt:desc, id")).unwrap();
        assert_eq!(parse_sort_by(WALLET, Some(&norm)).unwrap(), (keys, norm));
    }

    #[test]
    fn other_field_lists() {
        // The same grammar over another whitelist (transaction history).
        const TX: &[Field] = &[
            Field::text("id"),
            Field::decimal("amount"),
            Field::time("createdAt"),
        ];
        let s = parse(TX, Some("amount>5"), Some("createdAt:DESC"), None, None).unwrap();
        assert_eq!(s.terms, vec![term(1, CmpOp::Gt, Value::Decimal(dec("5")))]);
        assert_eq!(
            s.sort,
            vec![SortKey {
                field: 2,
                descending: true
            }]
        );
        assert_err(
            &parse(TX, None, Some("ccyCode"), None, None).unwrap_err(),
            "sortBy",
            Some(1),
            "allowed fields: id, amount, createdAt",
        );
    }

    // --- offset and limit ---

    #[test]
    fn offset_and_limit() {
        let s = parse(WALLET, None, None, Some("0"), Some("1")).unwrap();
        assert_eq!((s.offset, s.limit), (0, 1));
        let s = parse(WALLET, None, None, Some("250"), Some("1000")).unwrap();
        assert_eq!((s.offset, s.limit), (250, 1000));
        let s = parse(WALLET, None, None, Some("007"), Some("010")).unwrap();
        assert_eq!((s.offset, s.limit), (7, 10));
        let max = usize::MAX.to_string();
        assert_eq!(parse_offset(Some(&max)).unwrap(), usize::MAX);
    }

    #[test]
    fn bad_offsets() {
        for bad in ["-1", "+1", " 1", "1 ", "", "1.0", "1e3", "x", "٣"] {
            let e = parse(WALLET, None, None, Some(bad), None).unwrap_err();
            assert_eq!(e.param, "offset", "{bad:?}");
            assert_eq!(e.position, None);
            assert_eq!(
                e.message,
                format!("must be a non-negative integer, got '{bad}'")
            );
        }
        let e = parse_offset(Some("99999999999999999999999999")).unwrap_err();
        assert_err(&e, "offset", None, "must be at most");
        assert!(e.message.ends_with("got '99999999999999999999999999'"));
    }

    #[test]
    fn bad_limits() {
        for bad in [
            "0",
            "1001",
            "-1",
            "+5",
            " 5",
            "",
            "abc",
            "99999999999999999999999999",
        ] {
            let e = parse(WALLET, None, None, None, Some(bad)).unwrap_err();
            assert_eq!(e.param, "limit", "{bad:?}");
            assert_eq!(e.position, None);
            assert_eq!(
                e.message,
                format!("must be an integer from 1 to 1000, got '{bad}'")
            );
        }
        let e = parse_limit(Some("0")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "limit: must be an integer from 1 to 1000, got '0'"
        );
    }

    #[test]
    fn echoed_input_is_truncated_and_escaped() {
        let long = "x".repeat(100);
        let e = parse_limit(Some(&long)).unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "must be an integer from 1 to 1000, got '{}…'",
                "x".repeat(64)
            )
        );
        let e = parse_limit(Some("1\n2")).unwrap_err();
        assert!(e.message.ends_with("got '1\\n2'"), "{}", e.message);
        let e = q_err(&format!("status={}", "é".repeat(70)));
        assert!(
            e.message.contains(&format!("'{}…'", "é".repeat(64))),
            "{}",
            e.message
        );
    }

    // --- errors in q, with positions ---

    #[test]
    fn display_with_position() {
        let e = q_err("balance.value x");
        assert_eq!(
            e.to_string(),
            "q, at character 15: expected an operator (= != > >= < <=), found 'x'"
        );
    }

    #[test]
    fn unknown_field_lists_allowed() {
        let e = q_err(r#"ccyCode="USD",colour="red""#);
        assert_err(&e, "q", Some(15), "unknown field 'colour'");
        assert!(e.message.ends_with(
            "allowed fields: id, ccyCode, status, type, name, customerId, isFavourite, createdAt, balance.value, pendingBalance.value"
        ));
        // Case-sensitive.
        assert_err(
            &q_err("CcyCode=USD"),
            "q",
            Some(1),
            "unknown field 'CcyCode'",
        );
        assert_err(&q_err("balance=1"), "q", Some(1), "unknown field 'balance'");
    }

    #[test]
    fn missing_field() {
        assert_err(
            &q_err(r#"="x""#),
            "q",
            Some(1),
            "expected a field name, found '='",
        );
        assert_err(
            &q_err(r#" "x""#),
            "q",
            Some(2),
            "expected a field name, found '\"'",
        );
        assert_err(&q_err("ñ"), "q", Some(1), "unknown field 'ñ'");
        assert_err(
            &q_err("€=1"),
            "q",
            Some(1),
            "expected a field name, found '€'",
        );
    }

    #[test]
    fn bad_operator() {
        assert_err(
            &q_err("name"),
            "q",
            Some(5),
            "expected an operator (= != > >= < <=), found end of input",
        );
        assert_err(&q_err("name ~ x"), "q", Some(6), "found '~'");
        assert_err(&q_err("name ! x"), "q", Some(6), "found '!'");
        assert_err(
            &q_err("name=>x"),
            "q",
            Some(6),
            "expected a value, found '>'",
        );
        assert_err(
            &q_err("name==x"),
            "q",
            Some(6),
            "expected a value, found '='",
        );
        assert_err(
            &q_err("name=<x"),
            "q",
            Some(6),
            "expected a value, found '<'",
        );
    }

    #[test]
    fn ordering_on_bool_is_an_error() {
        for sym in [">", ">=", "<", "<="] {
            let e = q_err(&format!("isFavourite {sym} true"));
            assert_err(
                &e,
                "q",
                Some(13),
                &format!("operator '{sym}' is not allowed on the boolean field 'isFavourite'"),
            );
        }
    }

    #[test]
    fn missing_value() {
        assert_err(
            &q_err("name="),
            "q",
            Some(6),
            "expected a value, found end of input",
        );
        assert_err(
            &q_err("name=  "),
            "q",
            Some(8),
            "expected a value, found end of input",
        );
        assert_err(
            &q_err("name=,id=1"),
            "q",
            Some(6),
            "expected a value, found ','",
        );
    }

    #[test]
    fn bad_escapes_and_quotes() {
        assert_err(
            &q_err(r#"name="a\nb""#),
            "q",
            Some(8),
            r"invalid escape '\n'",
        );
        assert_err(
            &q_err(r#"name="a\'""#),
            "q",
            Some(8),
            r"invalid escape '\''",
        );
        let e = q_err(r#"id=1, name = "abc"#);
        assert_err(
            &e,
            "q",
            Some(14),
            "unterminated quoted value: the quote at character 14 is never closed",
        );
        // A backslash escaping the would-be closing quote leaves it open.
        assert_err(&q_err(r#"name="abc\""#), "q", Some(6), "unterminated");
        assert_err(&q_err(r#"name="abc\"#), "q", Some(6), "unterminated");
        // A quote inside a bare value.
        assert_err(
            &q_err(r#"name=ab"c""#),
            "q",
            Some(8),
            "unexpected '\"' inside an unquoted value",
        );
        // Text straight after a closing quote.
        assert_err(
            &q_err(r#"name="a"b"#),
            "q",
            Some(9),
            "expected ',' or 'AND' between terms, found 'b'",
        );
    }

    #[test]
    fn bad_joiners() {
        assert_err(
            &q_err("id=1,"),
            "q",
            Some(6),
            "expected a field name, found end of input",
        );
        assert_err(
            &q_err("id=1 , "),
            "q",
            Some(8),
            "expected a field name, found end of input",
        );
        assert_err(
            &q_err(",id=1"),
            "q",
            Some(1),
            "expected a field name, found ','",
        );
        assert_err(
            &q_err("id=1,,id=2"),
            "q",
            Some(6),
            "expected a field name, found ','",
        );
        assert_err(
            &q_err("id=1 AND"),
            "q",
            Some(9),
            "expected a field name, found end of input",
        );
        assert_err(
            &q_err("id=1 and "),
            "q",
            Some(10),
            "expected a field name, found end of input",
        );
        assert_err(
            &q_err("AND id=1"),
            "q",
            Some(1),
            "expected a field name, found 'AND'",
        );
        assert_err(
            &q_err("id=1 AND AND id=2"),
            "q",
            Some(10),
            "expected a field name, found 'AND'",
        );
        assert_err(
            &q_err("id=1, AND id=2"),
            "q",
            Some(7),
            "expected a field name, found 'AND'",
        );
        assert_err(
            &q_err("id=1 id=2"),
            "q",
            Some(6),
            "expected ',' or 'AND' between terms, found 'i'",
        );
        assert_err(
            &q_err("id=1 OR id=2"),
            "q",
            Some(6),
            "expected ',' or 'AND' between terms, found 'O'",
        );
    }

    #[test]
    fn bad_decimals() {
        for (bad, at) in [
            ("1e5", 15),
            ("+1", 15),
            ("1_000", 15),
            ("1.", 15),
            (".5", 15),
            ("--1", 15),
            ("1.2.3", 15),
            ("abc", 15),
            ("\"\"", 15),
            ("\" 1\"", 15),
            ("\"1 \"", 15),
            ("١", 15),
        ] {
            let e = q_err(&format!("balance.value={bad}"));
            assert_err(&e, "q", Some(at), "invalid decimal");
        }
        for too_big in [
            "79228162514264337593543950336",
            "0.00000000000000000000000000001",
        ] {
            let e = q_err(&format!("balance.value = {too_big}"));
            assert_err(
                &e,
                "q",
                Some(17),
                "out of range or has more than 28 decimal places",
            );
        }
    }

    #[test]
    fn bad_bools_times_and_closed_values() {
        assert_err(
            &q_err("isFavourite=TRUE"),
            "q",
            Some(13),
            "invalid boolean 'TRUE' for 'isFavourite': expected true or false",
        );
        assert_err(&q_err("isFavourite=1"), "q", Some(13), "invalid boolean");
        assert_err(
            &q_err(r#"createdAt>"2024-05-01""#),
            "q",
            Some(11),
            "invalid time '2024-05-01' for 'createdAt': expected an RFC 3339 time",
        );
        assert_err(
            &q_err("createdAt>2024-13-01T00:00:00Z"),
            "q",
            Some(11),
            "invalid time",
        );
        assert_err(
            &q_err("createdAt>1714564800000"),
            "q",
            Some(11),
            "invalid time",
        );
        assert_err(
            &q_err("createdAt>2024-05-01T12:00:00.0005Z"),
            "q",
            Some(11),
            "millisecond precision",
        );
        let e = q_err(r#"id=1, status="ACTIVE""#);
        assert_err(
            &e,
            "q",
            Some(14),
            "invalid value 'ACTIVE' for 'status'; allowed values: active, restricted, suspended, closed",
        );
        assert_err(
            &q_err("type=user"),
            "q",
            Some(6),
            "allowed values: customer, client_admin, general",
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        // "é" and "🎉" are several bytes each but one character.
        let e = q_err(r#"name="é🎉", idx=1"#);
        assert_err(&e, "q", Some(12), "unknown field 'idx'");
        let e = q_err("name=é🎉 x");
        assert_err(&e, "q", Some(9), "found 'x'");
    }

    // --- bounds ---

    #[test]
    fn q_length_bound() {
        let at_limit = format!("name={}", "x".repeat(MAX_QUERY_BYTES - 5));
        assert_eq!(at_limit.len(), MAX_QUERY_BYTES);
        assert!(q(&at_limit).is_ok());
        let over = format!("{at_limit}x");
        assert_err(
            &q_err(&over),
            "q",
            None,
            "must be at most 4096 bytes, got 4097",
        );
        // Bytes, not characters.
        let wide = format!("name={}", "é".repeat(2046));
        assert_eq!(wide.len(), 4097);
        assert_err(&q_err(&wide), "q", None, "4096 bytes");
    }

    #[test]
    fn term_count_bound() {
        let ok = vec!["id=1"; MAX_TERMS].join(",");
        assert_eq!(terms(&ok).len(), MAX_TERMS);
        let over = vec!["id=1"; MAX_TERMS + 1].join(",");
        // The 33rd term starts after 32 "id=1,".
        assert_err(
            &q_err(&over),
            "q",
            Some(32 * 5 + 1),
            "too many terms: at most 32",
        );
        // Trailing whitespace after the 32nd term is not a 33rd.
        assert!(q(&format!("{ok}   ")).is_ok());
    }

    // --- sortBy errors ---

    #[test]
    fn sort_by_errors() {
        assert_err(
            &sort_err("colour:ASC"),
            "sortBy",
            Some(1),
            "unknown field 'colour'; allowed fields: id, ccyCode",
        );
        assert_err(
            &sort_err("ccyCode:ASC, colour"),
            "sortBy",
            Some(14),
            "unknown field 'colour'",
        );
        assert_err(
            &sort_err("ccycode"),
            "sortBy",
            Some(1),
            "unknown field 'ccycode'",
        );
        assert_err(
            &sort_err("ccyCode:UP"),
            "sortBy",
            Some(9),
            "invalid sort direction 'UP'; expected ASC or DESC",
        );
        assert_err(
            &sort_err("ccyCode: ascending"),
            "sortBy",
            Some(10),
            "invalid sort direction 'ascending'",
        );
        assert_err(
            &sort_err("ccyCode:ASC:DESC"),
            "sortBy",
            Some(9),
            "invalid sort direction 'ASC:DESC'",
        );
        assert_err(
            &sort_err("ccyCode:"),
            "sortBy",
            Some(9),
            "expected ASC or DESC after ':'",
        );
        assert_err(&sort_err("ccyCode,"), "sortBy", Some(9), "empty sort key");
        assert_err(&sort_err(",ccyCode"), "sortBy", Some(1), "empty sort key");
        assert_err(
            &sort_err("ccyCode,,id"),
            "sortBy",
            Some(9),
            "empty sort key",
        );
        assert_err(
            &sort_err("ccyCode, ,id"),
            "sortBy",
            Some(10),
            "empty sort key",
        );
        assert_err(
            &sort_err(":DESC"),
            "sortBy",
            Some(1),
            "expected a field name before ':'",
        );
        assert_err(
            &sort_err("name:ASC,ccyCode,name:DESC"),
            "sortBy",
            Some(18),
            "field 'name' appears more than once",
        );
        assert_err(&sort_err("é:ASC,x"), "sortBy", Some(1), "unknown field 'é'");
        assert_err(&sort_err("id,é"), "sortBy", Some(4), "unknown field 'é'");
    }

    #[test]
    fn sort_key_bound() {
        let eight = "id,ccyCode,status,type,name,customerId,isFavourite,createdAt";
        assert_eq!(
            parse_sort_by(WALLET, Some(eight)).unwrap().0.len(),
            MAX_SORT_KEYS
        );
        let nine = format!("{eight},balance.value");
        let e = sort_err(&nine);
        assert_err(
            &e,
            "sortBy",
            Some(eight.chars().count() + 2),
            "too many sort keys: at most 8",
        );
    }

    #[test]
    fn first_bad_parameter_wins() {
        let e = parse(WALLET, Some("x=1"), Some("nope"), Some("-1"), Some("0")).unwrap_err();
        assert_eq!(e.param, "q");
        let e = parse(WALLET, Some("id=1"), Some("nope"), Some("-1"), Some("0")).unwrap_err();
        assert_eq!(e.param, "sortBy");
        let e = parse(WALLET, Some("id=1"), Some("id"), Some("-1"), Some("0")).unwrap_err();
        assert_eq!(e.param, "offset");
        let e = parse(WALLET, Some("id=1"), Some("id"), Some("1"), Some("0")).unwrap_err();
        assert_eq!(e.param, "limit");
    }

    // --- properties ---

    /// Fragments of the language, so that random inputs reach deep into the parser.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "id",
                "ccyCode",
                "status",
                "isFavourite",
                "createdAt",
                "balance.value",
                "name",
                "=",
                "!=",
                ">",
                ">=",
                "<",
                "<=",
                "==",
                "!",
                ",",
                " AND ",
                "and",
                " ",
                "\"",
                "\\",
                "\\\"",
                "\\\\",
                ":",
                ":ASC",
                ":desc",
                "true",
                "false",
                "active",
                "-",
                ".",
                "0",
                "10.50",
                "1e5",
                "2024-05-01T12:00:00Z",
                "é",
                "🎉",
                "\t",
                "\u{0}",
            ])
            .prop_map(str::to_owned),
            ".{0,4}",
        ]
    }

    fn sentence() -> impl Strategy<Value = String> {
        prop::collection::vec(fragment(), 0..24).prop_map(|v| v.concat())
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            ".{0,6}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Time),
            (any::<i64>(), 0u32..=28).prop_map(|(n, s)| Value::Decimal(Decimal::new(n, s))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_arbitrary_strings(
            q in proptest::option::of(".*"),
            sort_by in proptest::option::of(".*"),
            offset in proptest::option::of(".*"),
            limit in proptest::option::of(".*"),
        ) {
            let _ = parse(WALLET, q.as_deref(), sort_by.as_deref(), offset.as_deref(), limit.as_deref());
        }

        #[test]
        fn parse_never_panics_on_near_misses(q in sentence(), sort_by in sentence(), offset in sentence(), limit in sentence()) {
            for (param, result) in [
                ("q", parse(WALLET, Some(&q), None, None, None)),
                ("sortBy", parse(WALLET, None, Some(&sort_by), None, None)),
                ("offset", parse(WALLET, None, None, Some(&offset), None)),
                ("limit", parse(WALLET, None, None, None, Some(&limit))),
            ] {
                if let Err(e) = result {
                    prop_assert_eq!(e.param, param);
                    let len = match param {
                        "q" => q.chars().count(),
                        "sortBy" => sort_by.chars().count(),
                        _ => 0,
                    };
                    if let Some(p) = e.position {
                        prop_assert!(p >= 1 && p <= len + 1, "{} outside 1..={}", p, len + 1);
                    }
                    prop_assert!(!e.message.is_empty());
                }
            }
        }

        #[test]
        fn parsed_searches_evaluate_without_panicking(
            q in sentence(),
            sort_by in sentence(),
            a in prop::collection::vec(any_value(), WALLET.len()),
            b in prop::collection::vec(any_value(), WALLET.len()),
        ) {
            if let Ok(s) = parse(WALLET, Some(&q), Some(&sort_by), None, None) {
                let va = |i: usize| a.get(i).cloned().unwrap_or(Value::Null);
                let vb = |i: usize| b.get(i).cloned().unwrap_or(Value::Null);
                let _ = s.matches(va);
                // compare is antisymmetric, and reflexive.
                prop_assert_eq!(s.compare(va, vb), s.compare(vb, va).reverse());
                prop_assert_eq!(s.compare(va, va), Ordering::Equal);
                // The normalised sortBy means the same.
                let (keys, norm) = parse_sort_by(WALLET, Some(&s.sort_by)).unwrap();
                prop_assert_eq!(keys, s.sort);
                prop_assert_eq!(norm, s.sort_by);
            }
        }
    }
}
