-- debrief.v1.ProfileService/GetProfile: the statements of one call (the
-- session check is cached), as debrief-bench --compare gives them to
-- pgbench and to the SQLite loop.
-- `:name` stands for a parameter (pgbench -M prepared binds it); a NULL
-- parameter is written NULL. tests/api/bench_sql.rs checks that this is
-- exactly what the code sends, statement by statement. debrief sends
-- BEGIN and the settings in one message (their values as literals);
-- pgbench sends each statement on its own, as a client of the same SQL
-- would without that.
BEGIN;
SELECT set_config('app.user_id', :user_id, true), set_config('app.role', :role, true);
SELECT "profiles"."user_id", "profiles"."display_name", "profiles"."job_title", "profiles"."time_zone", "profiles"."language", "profiles"."focus_skills", "profiles"."onboarding", "profiles"."preferences", "profiles"."created_at", "profiles"."updated_at" FROM "profiles" WHERE "profiles"."user_id" = :user_id AND "profiles"."user_id" = :user_id LIMIT :limit;
ROLLBACK;
