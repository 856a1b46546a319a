package io.github.acikit

import java.nio.file.Path
import kotlin.io.path.writeText
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.io.TempDir

class ErrorTest {
    @TempDir
    lateinit var dir: Path

    @Test
    fun `a missing image is NotFound with its code`() = runBlocking {
        Store.open(dir.resolve("store").toString()).use { store ->
            val err = assertFailsWith<AcikitException.NotFound> { store.get("example.com/none") }
            assertEquals("not_found", err.code)
            assertEquals("not_found", err.category)
            assertFalse(err.retryable)
            assertTrue("example.com/none" in err.detail, err.detail)
            // The same fields through the base class.
            val base: AcikitException = err
            assertEquals("not_found", base.code)
            assertTrue("not_found" in base.message!!, base.message)
        }
    }

    @Test
    fun `a name matching several images cannot be removed`() = runBlocking {
        Store.open(dir.resolve("store").toString()).use { store ->
            store.importFile(Fixtures.image(dir, "example.com/app", "1.0.0").toString())
            store.importFile(Fixtures.image(dir, "example.com/app", "2.0.0").toString())
            val err = assertFailsWith<AcikitException.Input> { store.remove("example.com/app") }
            assertEquals("ambiguous_image", err.code)
            assertEquals(2, store.list().size)
        }
    }

    @Test
    fun `bad arguments are Input errors`() = runBlocking {
        val aci = Fixtures.image(dir, "example.com/hello")
        Store.open(dir.resolve("store").toString()).use { store ->
            val id = store.importFile(aci.toString()).id
            val err = assertFailsWith<AcikitException.Input> {
                store.export(id, dir.resolve("x.aci").toString(), compression = "rar")
            }
            assertEquals("invalid_argument", err.code)
            val bad = assertFailsWith<AcikitException.Input> { store.get("Not A Name!") }
            assertEquals("invalid_value", bad.code)
        }
    }

    @Test
    fun `an invalid manifest lists its problems`() = runBlocking {
        val layout = Fixtures.layout(dir, "example.com/bad", "1.0.0")
        layout.resolve("manifest").writeText("""{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name"}""")
        val err = assertFailsWith<AcikitException.InvalidImage> {
            build(layout.toString(), dir.resolve("bad.aci").toString())
        }
        assertEquals("invalid_manifest", err.code)
        assertTrue(err.problems.any { it.path == "$.name" && it.code == "bad_name" }, "${err.problems}")
    }

    @Test
    fun `a file that is not an image is InvalidImage, a missing one NotFound`() = runBlocking {
        val text = dir.resolve("text.aci")
        text.writeText("not an archive at all, just some text that is long enough to look at\n".repeat(20))
        val err = assertFailsWith<AcikitException.InvalidImage> { validate(text.toString()) }
        assertEquals("invalid_image", err.category)
        val missing = assertFailsWith<AcikitException.NotFound> { imageId(dir.resolve("none.aci").toString()) }
        assertEquals("not_found", missing.code)
    }
}
