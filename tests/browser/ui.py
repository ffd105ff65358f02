"""What the user does and sees on a conversation page, shared by the browser tests."""

from playwright.sync_api import Locator, Page, Request, expect

DEMO_MODEL = "demo/echo"


def new_conversation(page: Page) -> None:
    page.goto("/conversations/")
    page.get_by_role("main").get_by_role("button", name="New conversation").click()
    expect(page.get_by_role("heading", name="New conversation", level=1)).to_be_visible()


def message_box(page: Page) -> Locator:
    return page.get_by_label("Message", exact=True)


def send_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Send", exact=True)


def stop_button(page: Page) -> Locator:
    return page.get_by_role("button", name="Stop", exact=True)


def write_and_send(page: Page, text: str) -> None:
    message_box(page).fill(text)
    send_button(page).click()


def set_model(page: Page, model: str) -> None:
    page.get_by_label("Model", exact=True).fill(model)


def set_extra_parameters(page: Page, text: str) -> None:
    page.get_by_label("Extra parameters (JSON)").fill(text)


def messages(page: Page) -> Locator:
    return page.get_by_role("region", name="Messages").get_by_role("listitem")


def user_message(page: Page) -> Locator:
    return messages(page).filter(has=page.locator(".role", has_text="User"))


def reply(page: Page) -> Locator:
    return messages(page).filter(has=page.locator(".role", has_text="Assistant"))


def open_inspector(page: Page) -> Locator:
    inspector = reply(page).locator("details.inspector")
    inspector.locator(":scope > summary", has_text="Inspect").click()
    expect(inspector).to_have_attribute("open", "")
    return inspector


def wire_section(inspector: Locator, heading: str) -> Locator:
    return inspector.locator("section").filter(
        has=inspector.page.get_by_role("heading", name=heading, exact=True)
    )


def expect_demo_reply(page: Page, text: str, answer: Locator | None = None) -> None:
    """The demo's reply, rendered as Markdown: only the final HTML has the bold text."""
    answer = reply(page) if answer is None else answer
    expect(answer.locator("strong", has_text="Demo reply")).to_be_visible()
    expect(answer.locator("blockquote")).to_contain_text(text)


def record_posts(page: Page, *endings: str) -> dict[str, list[Request]]:
    """The POSTs the page makes to URLs ending with each of `endings`, as they happen."""
    seen: dict[str, list[Request]] = {ending: [] for ending in endings}

    def on_request(request: Request) -> None:
        for ending in endings:
            if request.method == "POST" and request.url.endswith(ending):
                seen[ending].append(request)

    page.on("request", on_request)
    return seen
