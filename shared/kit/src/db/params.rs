//! Bind parameters numbered by the builder as values are bound ([`Params`]), so a
//! statement built in pieces (an entry, then its postings, then its balance moves, …)
//! never computes a placeholder's number from row counts and widths.

use std::fmt;

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments};

use super::Backend;

/// The bind parameters of one statement, with the placeholder of each value as it is
/// pushed: `$1`, `$2`, … in push order, or `?` for every value on SQLite when asked for
/// ([`Params::for_backend`]). Hand the values to sqlx with [`Params::into_arguments`]
/// (`sqlx::query_with(&sql, params.into_arguments())`).
#[derive(Default)]
pub struct Params<'q> {
    arguments: AnyArguments<'q>,
    bound: usize,
    anonymous: bool,
}

impl fmt::Debug for Params<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Params").field("bound", &self.bound).field("anonymous", &self.anonymous).finish()
    }
}

/// The placeholder of one bound value, written into SQL by `Display`: `$N` (numbered,
/// usable several times in a statement) or `?` (anonymous: bound once, in text order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder(Option<usize>);

impl fmt::Display for Placeholder {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(number) => write!(formatter, "${number}"),
            None => formatter.write_str("?"),
        }
    }
}

impl<'q> Params<'q> {
    /// Numbered placeholders (`$1`, `$2`, …), which both backends accept, in any text
    /// order and as often as needed.
    pub fn numbered() -> Self {
        Self::default()
    }

    /// Numbered placeholders on PostgreSQL, anonymous `?` on SQLite, for a statement whose
    /// every placeholder comes from this builder and stands once in the text, in push
    /// order (sqlx counts anonymous parameters apart from numbered ones).
    // sqlx binds SQLite parameters by name with a linear search: numbered ones cost quadratic time.
    pub fn for_backend(backend: Backend) -> Self {
        Self { anonymous: backend == Backend::Sqlite, ..Self::default() }
    }

    /// Binds `value` as the next parameter and returns its placeholder. `Encode` when
    /// sqlx cannot encode the value.
    pub fn push<T>(&mut self, value: T) -> Result<Placeholder, sqlx::Error>
    where
        T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
    {
        self.arguments.add(value).map_err(sqlx::Error::Encode)?;
        self.bound += 1;
        Ok(Placeholder((!self.anonymous).then_some(self.bound)))
    }

    /// Binds every value of `values` in order; their placeholders.
    pub fn push_each<T, I>(&mut self, values: I) -> Result<Vec<Placeholder>, sqlx::Error>
    where
        I: IntoIterator<Item = T>,
        T: 'q + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
    {
        values.into_iter().map(|value| self.push(value)).collect()
    }

    /// How many values are bound.
    pub fn len(&self) -> usize {
        self.bound
    }

    /// True when no value is bound.
    pub fn is_empty(&self) -> bool {
        self.bound == 0
    }

    /// The bound values, for `sqlx::query_with` and its siblings.
    pub fn into_arguments(self) -> AnyArguments<'q> {
        self.arguments
    }
}

/// `$1, $2, …`: the placeholders of an `IN` list or of a row's columns.
pub fn list(placeholders: &[Placeholder]) -> String {
    placeholders.iter().map(Placeholder::to_string).collect::<Vec<_>>().join(", ")
}

/// `($1, $2, …)`: one row of a `VALUES` list.
pub fn tuple(placeholders: &[Placeholder]) -> String {
    format!("({})", list(placeholders))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_push_order_across_pieces() -> Result<(), sqlx::Error> {
        let mut params = Params::numbered();
        let entry = params.push_each(["id", "key"])?;
        let created_at = params.push(7_i64)?;
        let mut rows = Vec::new();
        for seq in 0..2_i64 {
            rows.push(tuple(&[params.push(seq)?, params.push("a")?]));
        }
        assert_eq!(list(&entry), "$1, $2");
        assert_eq!(created_at.to_string(), "$3");
        assert_eq!(rows.join(", "), "($4, $5), ($6, $7)");
        assert_eq!((params.len(), params.is_empty()), (7, false));
        Ok(())
    }

    #[test]
    fn sqlite_statements_may_ask_for_anonymous_placeholders() -> Result<(), sqlx::Error> {
        let mut sqlite = Params::for_backend(Backend::Sqlite);
        assert!(sqlite.is_empty());
        assert_eq!(tuple(&sqlite.push_each([1_i64, 2])?), "(?, ?)");
        let mut postgres = Params::for_backend(Backend::Postgres);
        assert_eq!(tuple(&postgres.push_each([1_i64, 2])?), "($1, $2)");
        assert_eq!(tuple(&[]), "()");
        Ok(())
    }

    #[tokio::test]
    async fn the_bound_values_reach_the_statement_in_push_order() -> anyhow::Result<()> {
        let database = crate::testing::TestDatabase::new().await?;
        let db = super::super::Db::connect(&database.url, &super::super::DbOptions::default()).await?;
        let mut params = Params::numbered();
        let (first, second) = (params.push(40_i64)?, params.push(2_i64)?);
        // The second placeholder first in the text: numbers, not text order, pick the value.
        let sql = format!("SELECT {second} - {first} + {second}");
        let value: i64 = sqlx::query_scalar_with(&sql, params.into_arguments()).fetch_one(db.pool()).await?;
        assert_eq!(value, -36);
        db.close().await;
        Ok(())
    }
}
