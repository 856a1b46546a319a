-- acikit store index, schema version 2.
--
-- The index no longer lists content objects. Each image's recipe already names
-- every object the image uses, so `gc`, `rm` and `fsck` read references from the
-- recipes, and `stats` reads object sizes from the object files. One row per
-- (image, object) cost ~2.8 MB of index per image of a Debian base system, more
-- than the content a typical new version adds.
DROP INDEX image_objects_digest;
DROP TABLE image_objects;
DROP TABLE objects;
