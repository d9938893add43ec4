-- How the video got into the MP4 (issue #19): "transcoded" (decoded and encoded again with
-- libx264) or "remuxed" (an H.264 input's packets copied unchanged). NULL for audio-only outputs
-- and for jobs finished before this column existed.
ALTER TABLE jobs ADD COLUMN output_video_path text
    CHECK (output_video_path IN ('transcoded', 'remuxed'));
