//! Small schema helpers shared by the migrations.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::timestamp_with_time_zone;

/// `CREATE TABLE name` with `created_at` and `updated_at` (timestamptz,
/// default now). The application sets `updated_at` on every change.
pub fn table(name: &'static str) -> TableCreateStatement {
    Table::create()
        .table(name)
        .col(timestamp_with_time_zone("created_at").default(Expr::current_timestamp()))
        .col(timestamp_with_time_zone("updated_at").default(Expr::current_timestamp()))
        .take()
}

/// A foreign key from `table.column` to `to_table.to_column`, deleting the
/// row with its parent.
pub fn cascade(
    table: &'static str,
    column: &'static str,
    to_table: &'static str,
    to_column: &'static str,
) -> ForeignKeyCreateStatement {
    foreign_key(table, column, to_table, to_column, ForeignKeyAction::Cascade)
}

/// A foreign key that refuses to delete a parent still referenced.
pub fn restrict(
    table: &'static str,
    column: &'static str,
    to_table: &'static str,
    to_column: &'static str,
) -> ForeignKeyCreateStatement {
    foreign_key(table, column, to_table, to_column, ForeignKeyAction::Restrict)
}

fn foreign_key(
    table: &'static str,
    column: &'static str,
    to_table: &'static str,
    to_column: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_{column}"))
        .from(table, column)
        .to(to_table, to_column)
        .on_delete(on_delete)
        .take()
}

/// `CREATE INDEX idx_<table>_<columns...> ON table (columns...)`.
pub fn index(table: &'static str, columns: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index
        .name(format!("idx_{table}_{}", columns.join("_")))
        .table(table);
    for column in columns {
        index.col(*column);
    }
    index.take()
}

/// A unique index over `columns`.
pub fn unique(table: &'static str, columns: &[&'static str]) -> IndexCreateStatement {
    let mut index = index(table, columns);
    index.unique();
    index.name(format!("uq_{table}_{}", columns.join("_")));
    index
}

/// A `CHECK (column IN (...))` expression for a text enum column.
pub fn one_of(column: &'static str, values: &[&'static str]) -> SimpleExpr {
    Expr::col(column).is_in(values.iter().copied())
}

/// Creates the tables, then their indexes, in order.
pub async fn create(
    manager: &SchemaManager<'_>,
    tables: Vec<TableCreateStatement>,
    indexes: Vec<IndexCreateStatement>,
) -> Result<(), DbErr> {
    for table in tables {
        manager.create_table(table).await?;
    }
    for index in indexes {
        manager.create_index(index).await?;
    }
    Ok(())
}

/// Drops the tables, in the order given (children first).
pub async fn drop(manager: &SchemaManager<'_>, tables: &[&'static str]) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(Table::drop().table(*table).if_exists().take())
            .await?;
    }
    Ok(())
}
