-- debrief.v1.MeetingService/UpdateMeeting of the title: the statements of
-- one call, as debrief-bench --compare gives them to pgbench and to the
-- SQLite loop.
-- `:name` stands for a parameter (pgbench -M prepared binds it); a NULL
-- parameter is written NULL. tests/api/bench_sql.rs checks that this is
-- exactly what the code sends, statement by statement.
BEGIN;
SELECT set_config('app.user_id', :user_id, true), set_config('app.role', :role, true);
SELECT "meetings"."id", "meetings"."user_id", "meetings"."title", "meetings"."description", "meetings"."status", "meetings"."occurred_at", "meetings"."participant_count", "meetings"."tags", "meetings"."current_stage", "meetings"."failure_reason", "meetings"."upload_id", "meetings"."file_name", "meetings"."content_type", "meetings"."size_bytes", "meetings"."duration_ms", "meetings"."codec", "meetings"."sample_rate_hz", "meetings"."channels", "meetings"."original_object", "meetings"."request_id", "meetings"."processed_at", "meetings"."deleted_at", "meetings"."kind", "meetings"."created_at", "meetings"."updated_at" FROM "meetings" WHERE "meetings"."user_id" = :user_id AND "meetings"."id" = :meeting_id AND "meetings"."deleted_at" IS NULL LIMIT :limit;
UPDATE "meetings" SET "title" = :title, "description" = :description, "occurred_at" = NULL, "participant_count" = NULL, "tags" = :tags, "updated_at" = :now WHERE "meetings"."user_id" = :user_id AND "meetings"."id" = :meeting_id AND "meetings"."deleted_at" IS NULL RETURNING "id", "user_id", "title", "description", "status", "occurred_at", "participant_count", "tags", "current_stage", "failure_reason", "upload_id", "file_name", "content_type", "size_bytes", "duration_ms", "codec", "sample_rate_hz", "channels", "original_object", "request_id", "processed_at", "deleted_at", "kind", "created_at", "updated_at";
COMMIT;
